#include "common/auth/credentials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kiln::auth {
namespace {

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Errno(std::string_view what, const std::string& path) {
  return absl::StrCat(Absl(what), " '", path, "': ", std::strerror(errno));
}

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("token file '", path, "' does not exist"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(Errno("cannot read token file", path));
  // One byte more than a token may be: enough to tell that the file holds something else.
  std::string buffer(token_limits::kMaxTokenBytes + 2, '\0');
  in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
  buffer.resize(static_cast<size_t>(in.gcount()));
  std::string token(absl::StripAsciiWhitespace(buffer));
  if (token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("token file '", path, "' is empty"));
  }
  if (token.size() > token_limits::kMaxTokenBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("token file '", path, "' holds more than a token"));
  }
  return token;
}

absl::Status WriteSecretFile(const std::string& path, std::string_view content) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError(Errno("cannot create", tmp));
  bool written =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
      ::fchmod(fd, 0600) == 0 && ::fsync(fd) == 0;
  std::string error = written ? "" : Errno("cannot write", tmp);
  ::close(fd);
  if (written && ::rename(tmp.c_str(), path.c_str()) != 0) {
    written = false;
    error = Errno("cannot rename into", path);
  }
  if (!written) {
    ::unlink(tmp.c_str());
    return absl::FailedPreconditionError(error);
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dir_fd >= 0) {
    (void)::fsync(dir_fd);  // Best effort: the file is in place.
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

absl::Status EnsureAdminToken(const TokenKey& key, const std::string& path, absl::Time now) {
  if (absl::StatusOr<std::string> existing = ReadTokenFile(path); existing.ok()) {
    absl::StatusOr<Claims> claims = key.Verify(*existing, now);
    if (claims.ok() && claims->scope == Scope::kAdmin &&
        claims->expiry - now >= kAdminTokenRenewal) {
      return absl::OkStatus();
    }
  }
  Claims claims;
  claims.scope = Scope::kAdmin;
  claims.subject = "local-admin";
  claims.issued = now;
  claims.expiry = now + kAdminTokenLifetime;
  absl::StatusOr<std::string> token = key.Mint(claims);
  if (!token.ok()) return token.status();
  return WriteSecretFile(path, absl::StrCat(*token, "\n"));
}

absl::StatusOr<std::string> ResolveClientToken(const std::string& token,
                                               const std::string& token_file) {
  if (!token.empty()) return token;
  if (!token_file.empty()) return ReadTokenFile(token_file);
  std::vector<std::string> candidates;
  if (const char* data_dir = std::getenv("KILN_DATA_DIR"); data_dir != nullptr && *data_dir) {
    candidates.push_back(
        (std::filesystem::path(data_dir) / std::string(kAdminTokenFileName)).string());
  }
  candidates.push_back(
      (std::filesystem::path("kiln-data") / std::string(kAdminTokenFileName)).string());
  for (const std::string& candidate : candidates) {
    absl::StatusOr<std::string> found = ReadTokenFile(candidate);
    if (!absl::IsNotFound(found.status())) return found;
  }
  return std::string();
}

}  // namespace kiln::auth
