#include "orchestrator/history/task_id_allocator.h"

#include <algorithm>

#include "common/status.h"

namespace kiln::orchestrator {
namespace {
constexpr char kBlockEndKey[] = "task_id_block_end";
}  // namespace

absl::StatusOr<std::unique_ptr<TaskIdAllocator>> TaskIdAllocator::Create(Store* store) {
  std::unique_ptr<TaskIdAllocator> allocator(new TaskIdAllocator(store));
  fiber::MutexLock reserving(&allocator->reserve_mu_);
  absl::Status status = allocator->ReserveBlock();
  // A store that refuses writes (a full disk) must not keep the engine from starting to serve
  // reads: the block is reserved by the first Next() that finds it can write.
  if (!status.ok() && !absl::IsUnavailable(status)) return status;
  return allocator;
}

absl::Status TaskIdAllocator::ReserveBlock() {
  absl::StatusOr<int64_t> end;
  {
    fiber::ParkScope park;  // Only reserve_mu_, a fiber::Mutex, is held.
    end = store_->FetchAdd(Table::kMeta, kBlockEndKey, kBlockSize);
  }
  if (!end.ok()) return end.status();
  absl::MutexLock lock(&mu_);
  // Ids start at 1: the first block of a new store is [1, kBlockSize).
  next_ = std::max<int64_t>(1, *end - kBlockSize);
  block_end_ = *end;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> TaskIdAllocator::Next() {
  {
    absl::MutexLock lock(&mu_);
    if (next_ < block_end_) return next_++;
  }
  fiber::MutexLock reserving(&reserve_mu_);
  for (;;) {
    {
      // Another caller may have taken the next block while this one waited.
      absl::MutexLock lock(&mu_);
      if (next_ < block_end_) return next_++;
    }
    RETURN_IF_ERROR(ReserveBlock());
  }
}

}  // namespace kiln::orchestrator
