// LogReaderRegistry: the ReadLog calls in progress (each a LogReader), so that the server's
// shutdown can end the follows and the handler's destructor can wait until the last reader is gone
// (readers use the handler's parts). Bounded: past the limit a new read is refused.
#pragma once

#include <cstddef>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace kiln::orchestrator {

class LogReader;

class LogReaderRegistry {
 public:
  explicit LogReaderRegistry(size_t max_readers) : max_readers_(max_readers) {}

  // kUnavailable once shutting down, kResourceExhausted at the limit.
  absl::Status Add(LogReader* reader);
  void Remove(LogReader* reader);
  // Refuses new readers and ends every follow with kUnavailable.
  void Shutdown();
  void WaitUntilEmpty();
  size_t size();

 private:
  const size_t max_readers_;
  absl::Mutex mu_;
  absl::flat_hash_set<LogReader*> readers_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kiln::orchestrator
