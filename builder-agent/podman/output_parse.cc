#include "builder-agent/podman/output_parse.h"

#include <charconv>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln::builder {
namespace {

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The digest ("sha256:...") that follows `marker` in `line`, or "".
std::string DigestAfter(std::string_view line, std::string_view marker) {
  size_t at = line.find(marker);
  if (at == std::string_view::npos) return "";
  std::string_view rest = line.substr(at + marker.size());
  if (!absl::StartsWith(Absl(rest), "sha256:")) return "";
  size_t end = 7;
  while (end < rest.size() && std::isxdigit(static_cast<unsigned char>(rest[end]))) ++end;
  return std::string(rest.substr(0, end));
}

// The msg="..." of a logrus line (escapes left as they are).
std::string_view LogrusMessage(std::string_view line) {
  size_t at = line.find("msg=\"");
  if (at == std::string_view::npos) return "";
  std::string_view rest = line.substr(at + 5);
  size_t end = rest.rfind('"');
  return end == std::string_view::npos ? rest : rest.substr(0, end);
}

}  // namespace

void BuildOutputParser::Feed(std::string_view line) {
  if (absl::StartsWith(Absl(line), "STEP ")) {
    // "STEP 3/5: COPY app.txt /app.txt"
    std::string_view rest = line.substr(5);
    size_t slash = rest.find('/');
    size_t colon = rest.find(": ");
    if (slash == std::string_view::npos || colon == std::string_view::npos || colon < slash) {
      return;
    }
    int step = 0;
    std::from_chars(rest.data(), rest.data() + slash, step);
    if (step <= 0 || !seen_steps_.insert(step).second) return;
    absl::string_view instruction = Absl(rest.substr(colon + 2));
    // FROM commits nothing; the label step Build appends is ours, not the project's.
    current_counts_ = !absl::StartsWithIgnoreCase(instruction, "FROM ") &&
                      !absl::StartsWith(instruction, kKilnLabelStepPrefix);
    if (current_counts_) ++steps_total_;
  } else if (absl::StartsWith(Absl(line), "--> Using cache ")) {
    if (current_counts_) ++reused_;
  }
}

std::string PushOutputParser::Feed(std::string_view line) {
  if (absl::StartsWith(Absl(line), "time=\"")) {
    std::string_view msg = LogrusMessage(line);
    if (absl::StartsWith(Absl(msg), "Skipping blob ")) {
      std::string digest = DigestAfter(msg, "Skipping blob ");
      if (!digest.empty()) skipped_.insert(digest);
    } else if (absl::StartsWith(Absl(msg), "Upload of layer ")) {
      std::string digest = DigestAfter(msg, "Upload of layer ");
      if (!digest.empty()) uploaded_.insert(digest);
    }
    if (absl::StrContains(Absl(line), " level=error ") ||
        absl::StrContains(Absl(line), " level=warning ") ||
        absl::StrContains(Absl(line), " level=fatal ")) {
      return std::string(msg);
    }
    return "";
  }
  if (absl::StartsWith(Absl(line), "Copying config ")) {
    config_ = DigestAfter(line, "Copying config ");
  }
  return std::string(line);
}

int PushOutputParser::blobs_pushed() const {
  return static_cast<int>(uploaded_.size()) - (config_pushed() ? 1 : 0);
}

int PushOutputParser::blobs_reused() const {
  return static_cast<int>(skipped_.size()) - (skipped_.count(config_) ? 1 : 0);
}

}  // namespace kiln::builder
