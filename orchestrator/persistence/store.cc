#include "orchestrator/persistence/store.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {

const char* TableName(Table table) {
  switch (table) {
    case Table::kMeta:
      return "meta";
    case Table::kExecutions:
      return "executions";
    case Table::kHistory:
      return "history";
    case Table::kCurrent:
      return "current";
    case Table::kTasks:
      return "tasks";
    case Table::kTimers:
      return "timers";
    case Table::kVisibility:
      return "visibility";
    case Table::kLogs:
      return "logs";
    case Table::kRetention:
      return "retention";
  }
  return "unknown";
}

void WriteBatch::Append(WriteBatch&& other) {
  bytes_ += other.bytes_;
  sync_ = sync_ || other.sync_;  // one synced part makes the whole batch synced
  for (auto& op : other.ops_) ops_.push_back(std::move(op));
  fences_.insert(fences_.end(), other.fences_.begin(), other.fences_.end());
  other.Clear();
}

bool WriteBatch::Unput(Table table, std::string_view key) {
  for (auto it = ops_.rbegin(); it != ops_.rend(); ++it) {
    if (it->table != table || it->key != key) continue;
    if (it->type != OpType::kPut) return false;
    bytes_ -= it->key.size() + it->value.size();
    ops_.erase(std::next(it).base());
    return true;
  }
  return false;
}

absl::StatusOr<int64_t> Store::FetchAdd(Table table, std::string_view key, int64_t delta) {
  if (delta <= 0) return absl::InvalidArgumentError("FetchAdd: delta must be positive");
  // One lock for every store of the process: counters are rare (a task-id block per 100,000
  // ids), and a lock per store would need a member in this interface.
  static absl::Mutex mu(absl::kConstInit);
  absl::MutexLock lock(&mu);
  ASSIGN_OR_RETURN(std::optional<std::string> stored, Get(table, key));
  int64_t value = 0;
  if (stored.has_value()) {
    if (stored->size() != 8) {
      return absl::DataLossError(absl::StrCat("counter ", TableName(table), "/", std::string(key),
                                              " is not 8 bytes but ", stored->size()));
    }
    value = static_cast<int64_t>(keys::ReadBigEndian64(*stored));
  }
  value += delta;
  std::string encoded;
  keys::AppendBigEndian64(&encoded, static_cast<uint64_t>(value));
  WriteBatch batch;
  batch.Put(table, std::string(key), std::move(encoded));
  RETURN_IF_ERROR(Commit(batch));
  return value;
}

}  // namespace kiln::orchestrator
