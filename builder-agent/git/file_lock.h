// An exclusive flock() on a file, held for the life of the object: serialises fetches of one
// repository across threads and processes sharing a volume. The descriptor is O_CLOEXEC, so
// the build's child processes never inherit (and so prolong) the lock; a crashed holder's lock
// is released by the kernel.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::builder {

class FileLock {
 public:
  // Creates `path` if missing and waits for the lock: kDeadlineExceeded after `timeout`,
  // kCancelled as soon as `cancelled` (may be empty) returns true.
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(const std::string& path,
                                                           absl::Duration timeout,
                                                           const std::function<bool()>& cancelled);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace kiln::builder
