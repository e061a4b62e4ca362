#include "worker/machines/machine_provider.h"

#include "absl/strings/str_cat.h"

namespace kiln::worker {
namespace {

constexpr size_t kMaxProjectIdLength = 63;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

absl::Status ValidateProjectId(const std::string& project) {
  if (project.empty() || project.size() > kMaxProjectIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("project id must be 1 to ", kMaxProjectIdLength, " characters"));
  }
  if (!IsLowerAlnum(project[0])) {
    return absl::InvalidArgumentError("project id must start with [a-z0-9]");
  }
  for (char c : project) {
    if (!IsLowerAlnum(c) && c != '-') {
      // Not echoed: it may hold anything (a path, a control character).
      return absl::InvalidArgumentError("project id may hold only [a-z0-9-]");
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::worker
