#include "orchestrator/history/engine_harness.h"

#include "common/proto_time.h"
#include "orchestrator/persistence/memory_store.h"
#include "orchestrator/persistence/postgres_store.h"
#include "tests/testutil/postgres.h"

namespace kiln::orchestrator::testing {

api::Payloads Text(const std::string& s) {
  api::Payloads payloads;
  auto* p = payloads.add_payloads();
  (*p->mutable_metadata())["encoding"] = "json/plain";
  p->set_data(s);
  return payloads;
}

namespace {
std::unique_ptr<Store> HarnessStore() {
  if (!kiln::testutil::TestStoreIsPostgres()) return std::make_unique<MemoryStore>();
  return PostgresStore::Open(kiln::testutil::TestDatabaseOrSkip()).value();
}
}  // namespace

EngineHarness::EngineHarness() : store_(HarnessStore()) {
  engine_ = HistoryEngine::Create(store_.get(), &clock_, &ids_, this).value();
}

absl::StatusOr<std::string> EngineHarness::Start(const std::string& workflow_id,
                                                 api::StartWorkflowExecutionRequest request) {
  request.set_workflow_id(workflow_id);
  if (request.workflow_type().name().empty()) request.mutable_workflow_type()->set_name("wf");
  if (request.task_queue().name().empty()) request.mutable_task_queue()->set_name("q");
  auto response = engine_->StartWorkflowExecution(request);
  if (!response.ok()) return response.status();
  return response->run_id();
}

std::vector<QueuedTask> EngineHarness::Backlog(keys::TaskKind kind, const std::string& queue) {
  std::vector<QueuedTask> tasks;
  std::string prefix = keys::TaskQueuePrefix(kind, "default", queue);
  absl::Status status =
      store_->Scan(Table::kTasks, prefix, keys::PrefixEnd(prefix), 0,
                   [&](std::string_view key, std::string_view value) {
                     QueuedTask& task = tasks.emplace_back();
                     task.kind = kind;
                     task.ns = "default";
                     task.queue = queue;
                     task.task_id = keys::TaskIdOf(key);
                     task.record.ParseFromArray(value.data(), static_cast<int>(value.size()));
                     return true;
                   });
  if (!status.ok()) tasks.clear();
  return tasks;
}

std::optional<api::PollWorkflowTaskQueueResponse> EngineHarness::PollWorkflowTask(
    const std::string& queue) {
  for (const QueuedTask& task : Backlog(keys::TaskKind::kWorkflow, queue)) {
    auto started = engine_->RecordWorkflowTaskStarted(task, "worker-1", ids_.NewUuid());
    if (started.ok()) return *started;
    (void)engine_->DropStaleTask(task);  // Stale: dropped, as the frontend does.
  }
  return std::nullopt;
}

std::optional<api::PollActivityTaskQueueResponse> EngineHarness::PollActivityTask(
    const std::string& queue) {
  for (const QueuedTask& task : Backlog(keys::TaskKind::kActivity, queue)) {
    auto started = engine_->RecordActivityTaskStarted(task, "worker-1", ids_.NewUuid());
    if (started.ok()) return *started;
    (void)engine_->DropStaleTask(task);
  }
  return std::nullopt;
}

absl::Status FireDueTimers(Store& store, HistoryEngine& engine, FakeClock& clock, absl::Time target,
                           int max_fires) {
  absl::Status status;
  for (int fired = 0; fired < max_fires; ++fired) {
    // The earliest stored timer of either table (keys sort by fire time); fire it if due.
    std::string key;
    std::string value;
    Table table = Table::kTimers;
    for (Table t : {Table::kTimers, Table::kRetention}) {
      (void)store.Scan(t, "", "", 1, [&](std::string_view k, std::string_view v) {
        if (key.empty() || k < key) {
          key = std::string(k);
          value = std::string(v);
          table = t;
        }
        return false;
      });
    }
    if (key.empty() || keys::TimerFireTime(key) > target) break;
    if (keys::TimerFireTime(key) > clock.Now()) clock.AdvanceTo(keys::TimerFireTime(key));
    internal::TimerTask task;
    task.ParseFromString(value);
    status =
        table == Table::kRetention ? engine.FireRetention(key, task) : engine.FireTimer(key, task);
    if (!status.ok()) break;
  }
  clock.AdvanceTo(target);
  return status;
}

void EngineHarness::Advance(absl::Duration d) {
  (void)FireDueTimers(*store_, *engine_, clock_, clock_.Now() + d);
}

api::Command EngineHarness::ScheduleActivity(const std::string& id, const std::string& type,
                                             absl::Duration start_to_close,
                                             api::RetryPolicy retry) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
  auto* a = command.mutable_schedule_activity_task_command_attributes();
  a->set_activity_id(id);
  a->mutable_activity_type()->set_name(type);
  ToProto(start_to_close, a->mutable_start_to_close_timeout());
  *a->mutable_retry_policy() = retry;
  *a->mutable_input() = Text("\"in\"");
  return command;
}

api::Command EngineHarness::StartTimer(const std::string& id, absl::Duration after) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_START_TIMER);
  command.mutable_start_timer_command_attributes()->set_timer_id(id);
  ToProto(after, command.mutable_start_timer_command_attributes()->mutable_start_to_fire_timeout());
  return command;
}

api::Command EngineHarness::CompleteWorkflow(const std::string& result) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
  *command.mutable_complete_workflow_execution_command_attributes()->mutable_result() =
      Text(result);
  return command;
}

absl::Status EngineHarness::Complete(const api::PollWorkflowTaskQueueResponse& task,
                                     std::vector<api::Command> commands) {
  api::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token(task.task_token());
  request.set_identity("worker-1");
  for (auto& c : commands) *request.add_commands() = std::move(c);
  return engine_->RespondWorkflowTaskCompleted(request).status();
}

api::History EngineHarness::History(const std::string& run_id) {
  api::GetWorkflowExecutionHistoryRequest request;
  request.mutable_execution()->set_run_id(run_id);
  request.set_maximum_page_size(10'000);
  auto read = engine_->ReadHistory(request);
  return read.ok() ? read->response.history() : api::History();
}

std::vector<api::EventType> EngineHarness::EventTypes(const std::string& run_id) {
  std::vector<api::EventType> types;
  api::History history = History(run_id);
  for (const auto& e : history.events()) types.push_back(e.event_type());
  return types;
}

api::DescribeWorkflowExecutionResponse EngineHarness::Describe(const std::string& run_id) {
  api::DescribeWorkflowExecutionRequest request;
  request.mutable_execution()->set_run_id(run_id);
  return engine_->DescribeWorkflowExecution(request).value();
}

}  // namespace kiln::orchestrator::testing
