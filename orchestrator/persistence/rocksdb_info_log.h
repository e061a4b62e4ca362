// RocksDB's info LOG, written by us rather than by RocksDB's own logger. RocksDB 7.8's logger
// writes through a WritableFileWriter, which asserts (aborting the process in Debian's build,
// whose assertions are live) on the write after one that failed: on a full disk the first log
// line after a failed write brought the whole orchestrator down. This one writes each line with
// write(2), drops what the disk refuses (and counts it), and keeps RocksDB's layout: <dir>/LOG,
// rotated at a size into LOG.old.<microseconds>, the newest `keep_old` of those kept.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "rocksdb/env.h"

namespace kiln::orchestrator {

class RocksDbInfoLog final : public rocksdb::Logger {
 public:
  // Opens (appending) <dir>/LOG; a file that cannot be opened now is retried at the next line.
  RocksDbInfoLog(std::string dir, size_t max_bytes, size_t keep_old);
  ~RocksDbInfoLog() override;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
  size_t GetLogFileSize() const override;

  // Lines the disk refused since construction.
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  void OpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RotateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const std::string path_;
  const size_t max_bytes_;
  const size_t keep_old_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  size_t size_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace kiln::orchestrator
