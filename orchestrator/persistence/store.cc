#include "orchestrator/persistence/store.h"

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

}  // namespace kiln::orchestrator
