#include "orchestrator/persistence/rocksdb_info_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kiln::orchestrator {

RocksDbInfoLog::RocksDbInfoLog(std::string dir, size_t max_bytes, size_t keep_old)
    : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
      dir_(std::move(dir)),
      path_(dir_ + "/LOG"),
      max_bytes_(max_bytes),
      keep_old_(keep_old) {
  absl::MutexLock lock(&mu_);
  OpenLocked();
}

RocksDbInfoLog::~RocksDbInfoLog() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

void RocksDbInfoLog::OpenLocked() {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return;
  struct stat st {};
  size_ = ::fstat(fd_, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

void RocksDbInfoLog::RotateLocked() {
  ::close(fd_);
  fd_ = -1;
  const std::string old = absl::StrCat(path_, ".old.", absl::ToUnixMicros(absl::Now()));
  // Failures leave LOG where it is: it is reopened and keeps growing, which beats losing it.
  (void)::rename(path_.c_str(), old.c_str());
  std::vector<std::string> olds;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, error)) {
    std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, "LOG.old.")) olds.push_back(entry.path().string());
  }
  // Same-length microsecond stamps: the names sort by age.
  std::sort(olds.begin(), olds.end());
  for (size_t i = 0; i + keep_old_ < olds.size(); ++i) {
    std::filesystem::remove(olds[i], error);  // Best effort, as with every write here.
  }
  OpenLocked();
}

void RocksDbInfoLog::Logv(const char* format, va_list ap) {
  char line[1024];
  const absl::Time now = absl::Now();
  int prefix =
      std::snprintf(line, sizeof(line), "%s %zx ",
                    absl::FormatTime("%Y/%m/%d-%H:%M:%E6S", now, absl::LocalTimeZone()).c_str(),
                    std::hash<std::thread::id>()(std::this_thread::get_id()));
  if (prefix < 0) prefix = 0;
  size_t used = std::min(static_cast<size_t>(prefix), sizeof(line) - 2);
  int body = std::vsnprintf(line + used, sizeof(line) - used - 1, format, ap);
  if (body > 0) used = std::min(used + static_cast<size_t>(body), sizeof(line) - 2);
  if (used == 0 || line[used - 1] != '\n') line[used++] = '\n';

  absl::MutexLock lock(&mu_);
  if (fd_ >= 0 && max_bytes_ > 0 && size_ + used > max_bytes_) RotateLocked();
  if (fd_ < 0) OpenLocked();
  ssize_t written = fd_ >= 0 ? ::write(fd_, line, used) : -1;
  if (written != static_cast<ssize_t>(used)) {
    // A full disk (or a short write): the line is dropped, RocksDB carries on.
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  if (written > 0) size_ += static_cast<size_t>(written);
}

size_t RocksDbInfoLog::GetLogFileSize() const {
  absl::MutexLock lock(&mu_);
  return size_;
}

}  // namespace kiln::orchestrator
