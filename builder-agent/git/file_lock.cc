#include "builder-agent/git/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::builder {
namespace {

constexpr absl::Duration kLockPollInterval = absl::Milliseconds(20);

}  // namespace

absl::StatusOr<std::unique_ptr<FileLock>> FileLock::Acquire(
    const std::string& path, absl::Duration timeout, const std::function<bool()>& cancelled) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("opening ", path, ": ", std::strerror(errno)));
  }
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return std::unique_ptr<FileLock>(new FileLock(fd));
    int error = errno;
    if (error != EWOULDBLOCK && error != EINTR) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("locking ", path, ": ", std::strerror(error)));
    }
    if (cancelled && cancelled()) {
      ::close(fd);
      return absl::CancelledError("fetch cancelled while waiting for the repository's lock");
    }
    if (absl::Now() > deadline) {
      ::close(fd);
      return absl::DeadlineExceededError(absl::StrCat("another fetch of this repository held ",
                                                      path, " for more than ",
                                                      absl::FormatDuration(timeout)));
    }
    // The holder is another thread or process with no way to signal us: poll.
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(kLockPollInterval));
  }
}

FileLock::~FileLock() { ::close(fd_); }  // closing the descriptor releases the lock

}  // namespace kiln::builder
