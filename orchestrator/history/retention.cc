// HistoryEngine: retention. A closed run's deletion timer (Table::kRetention; older ones in
// Table::kTimers) deletes its history, signal and reset dedup records, logs, visibility record,
// current pointer and state, in bounded batches, and the timer's key last, so a crash part way
// through runs it again.
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/logs/log_store.h"

namespace kiln::orchestrator {
namespace {

// Deletes every key of `table` under `prefix`, a bounded batch per commit.
absl::Status DeletePrefix(Store& store, Table table, const std::string& prefix) {
  constexpr size_t kBatchKeys = 1'000;
  for (;;) {
    WriteBatch batch;
    RETURN_IF_ERROR(store.Scan(table, prefix, keys::PrefixEnd(prefix), kBatchKeys,
                               [&](std::string_view k, std::string_view) {
                                 batch.Delete(table, std::string(k));
                                 return true;
                               }));
    if (batch.size() < kBatchKeys) return batch.empty() ? absl::OkStatus() : store.Commit(batch);
    RETURN_IF_ERROR(store.Commit(batch));
  }
}

}  // namespace

absl::Status HistoryEngine::FireRetention(const std::string& key, const internal::TimerTask& task) {
  if (task.type() != internal::TIMER_TASK_TYPE_DELETE_HISTORY) {
    return absl::DataLossError(absl::StrCat("retention table holds a ",
                                            internal::TimerTaskType_Name(task.type()), " timer"));
  }
  return DeleteRun(Table::kRetention, key, task);
}

absl::Status HistoryEngine::DeleteRun(Table table, const std::string& key,
                                      const internal::TimerTask& task) {
  // Fired holding no lock, then only the run's (a fiber::Mutex): reads and commits may park.
  fiber::ParkScope park;
  auto handle = LoadRun(task.run_id());
  if (absl::IsNotFound(handle.status())) {
    WriteBatch batch;
    batch.Delete(table, key);
    return store_->Commit(batch);
  }
  if (!handle.ok()) return handle.status();
  const internal::ExecutionState state = *(**handle)->state;
  if (state.status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::InternalError("retention timer fired for an open run");
  }
  // The history first, then its signals' dedup records, in bounded batches (a long history
  // never makes one huge write).
  RETURN_IF_ERROR(DeletePrefix(*store_, Table::kHistory, keys::HistoryPrefix(state.run_id())));
  RETURN_IF_ERROR(DeletePrefix(*store_, Table::kMeta, keys::SignalRequestPrefix(state.run_id())));
  RETURN_IF_ERROR(DeletePrefix(*store_, Table::kMeta, keys::ResetRequestPrefix(state.run_id())));
  RETURN_IF_ERROR(DeleteRunLogs(*store_, state.run_id()));
  WriteBatch last;
  last.Delete(Table::kVisibility,
              keys::Visibility(state.namespace_(), FromProto(state.start_time()), state.run_id()));
  auto current = CurrentRunId(state.namespace_(), state.workflow_id());
  if (current.ok() && *current == state.run_id()) {
    last.Delete(Table::kCurrent, keys::Current(state.namespace_(), state.workflow_id()));
  }
  last.Delete(Table::kExecutions, keys::Execution(state.run_id()));
  last.Delete(table, key);
  RETURN_IF_ERROR(store_->Commit(last));
  (**handle)->state.reset();
  cache_.Forget(***handle);
  return absl::OkStatus();
}

}  // namespace kiln::orchestrator
