#include "builder-agent/args_from.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kiln::builder {
namespace {

bool ValidName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return !absl::StartsWith(name, "LD_");
}

}  // namespace

absl::StatusOr<ArgsFrom> ParseArgsFrom(const std::string& text) {
  if (text.size() > kMaxArgsFromBytes) {
    return absl::InvalidArgumentError("--args-from: over 64 KiB");
  }
  ArgsFrom parsed;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    if (line == "end") break;
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "arg=")) {
      if (parsed.args.size() >= kMaxArgsFromArgs) {
        return absl::InvalidArgumentError("--args-from: over 256 arguments");
      }
      parsed.args.emplace_back(line);
    } else if (absl::ConsumePrefix(&line, "env=")) {
      size_t eq = line.find('=');
      if (eq == absl::string_view::npos || !ValidName(line.substr(0, eq))) {
        return absl::InvalidArgumentError(
            absl::StrCat("--args-from line ", number, ": env=NAME=VALUE with a valid name"));
      }
      if (parsed.env.size() >= kMaxArgsFromEnv) {
        return absl::InvalidArgumentError("--args-from: over 256 variables");
      }
      parsed.env.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--args-from line ", number, ": neither arg= nor env= nor end"));
    }
  }
  return parsed;
}

absl::StatusOr<ArgsFrom> ReadArgsFrom(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--args-from ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buffer[4096];
  // Up to `end` (a pipe's writer may keep it open) or the end of the file.
  while (text.size() <= kMaxArgsFromBytes && !absl::StrContains(text, "\nend\n") &&
         !absl::StartsWith(text, "end\n")) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("--args-from ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return ParseArgsFrom(text);
}

}  // namespace kiln::builder
