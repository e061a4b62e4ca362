#include "common/open_files.h"

#include <sys/resource.h>

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

}  // namespace kiln
