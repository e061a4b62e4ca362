#include "common/open_files.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiln {

absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  OpenFileLimit result{limit.rlim_cur, limit.rlim_cur, limit.rlim_max};
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return absl::InternalError(
          absl::StrCat("setrlimit(RLIMIT_NOFILE, ", limit.rlim_max, "): ", std::strerror(errno)));
    }
    result.soft = limit.rlim_max;
  }
  return result;
}

uint64_t RaiseOpenFileLimitAndLog(std::string_view process) {
  absl::StatusOr<OpenFileLimit> limit = RaiseOpenFileLimit();
  const std::string event = absl::StrCat(std::string(process), ".open_files");
  if (!limit.ok()) {
    LogWarn(event, {{"status", limit.status()}});
    return 0;
  }
  LogInfo(event, {{"soft", limit->soft}, {"hard", limit->hard}, {"soft_before", limit->before}});
  return limit->soft;
}

int DefaultMaxConnections(int descriptors_each) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1000;
  const uint64_t soft = limit.rlim_cur;
  const uint64_t reserve = std::min<uint64_t>(512, soft / 2);
  const uint64_t each = static_cast<uint64_t>(std::max(1, descriptors_each));
  return static_cast<int>(std::clamp<uint64_t>((soft - reserve) / each, 16, 1'000'000));
}

}  // namespace kiln
