// Task ids: unique, increasing across restarts. Ids are handed out from blocks; the end of the
// current block is persisted before any id of it is used, so a restart continues past every
// id that could have been written. A block is taken with one atomic increment of the stored
// end (Store::FetchAdd), not a read and a write: two orchestrators sharing a store (PostgreSQL)
// never get the same block.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/fiber.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

class TaskIdAllocator {
 public:
  static constexpr int64_t kBlockSize = 100'000;

  // Reserves a first block (the stored end moves on by kBlockSize; the block ends there).
  static absl::StatusOr<std::unique_ptr<TaskIdAllocator>> Create(Store* store);

  // Called holding no absl::Mutex (only fiber::Mutexes, a run's lock): taking a new block from
  // the store parks an engine fiber, and so does waiting for another caller's.
  absl::StatusOr<int64_t> Next();

 private:
  explicit TaskIdAllocator(Store* store) : store_(store) {}
  absl::Status ReserveBlock() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reserve_mu_);

  Store* store_;
  // Held across the store's round trip that takes a block (a fiber::Mutex: a caller waiting
  // for it parks); mu_ guards the ids and is never held across a wait.
  fiber::Mutex reserve_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  int64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t block_end_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace kiln::orchestrator
