#include "orchestrator/history/task_id_allocator.h"

#include "absl/strings/str_cat.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {
namespace {
constexpr char kBlockEndKey[] = "task_id_block_end";
}  // namespace

absl::StatusOr<std::unique_ptr<TaskIdAllocator>> TaskIdAllocator::Create(Store* store) {
  std::unique_ptr<TaskIdAllocator> allocator(new TaskIdAllocator(store));
  auto stored = store->Get(Table::kMeta, kBlockEndKey);
  if (!stored.ok()) return stored.status();
  absl::MutexLock lock(&allocator->mu_);
  if (stored->has_value()) {
    if ((*stored)->size() != 8) return absl::DataLossError("meta/task_id_block_end is corrupt");
    allocator->next_ = static_cast<int64_t>(keys::ReadBigEndian64(**stored));
    allocator->block_end_ = allocator->next_;
  }
  absl::Status status = allocator->ReserveBlock();
  // A store that refuses writes (a full disk) must not keep the engine from starting to serve
  // reads: the block is reserved by the first Next() that finds it can write.
  if (!status.ok() && !absl::IsUnavailable(status)) return status;
  return allocator;
}

absl::Status TaskIdAllocator::ReserveBlock() {
  int64_t end = block_end_ + kBlockSize;
  std::string value;
  keys::AppendBigEndian64(&value, static_cast<uint64_t>(end));
  WriteBatch batch;
  batch.Put(Table::kMeta, kBlockEndKey, std::move(value));
  absl::Status status = store_->Commit(batch);
  if (!status.ok()) return status;
  block_end_ = end;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> TaskIdAllocator::Next() {
  absl::MutexLock lock(&mu_);
  if (next_ >= block_end_) {
    absl::Status status = ReserveBlock();
    if (!status.ok()) return status;
  }
  return next_++;
}

}  // namespace kiln::orchestrator
