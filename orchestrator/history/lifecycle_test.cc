// State-machine tests of signals, cancellation, continue-as-new and child workflows.
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

using testing::EngineHarness;
using testing::Text;
using E = api::EventType;

absl::Status Signal(EngineHarness& h, const std::string& workflow_id, const std::string& name,
                    const std::string& request_id = "") {
  api::SignalWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(workflow_id);
  request.set_signal_name(name);
  *request.mutable_input() = Text(name);
  request.set_request_id(request_id);
  return h.engine().SignalWorkflowExecution(request);
}

int Count(const std::vector<E>& types, E type) {
  return static_cast<int>(std::count(types.begin(), types.end(), type));
}

TEST_CASE("Signals are recorded once per request id and wake the workflow") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());  // waits for signals
  REQUIRE(Signal(h, "wf", "push", "r1").ok());
  REQUIRE(Signal(h, "wf", "push", "r1").ok());  // a retry: not recorded again
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  REQUIRE(Count(h.EventTypes(run), E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 1);
  // A signal racing the completion: it arrives while the task runs, so closing is refused and
  // the workflow gets to see it.
  REQUIRE(Signal(h, "wf", "late").ok());
  REQUIRE(h.Complete(*wt, {EngineHarness::CompleteWorkflow("done")}).ok());
  REQUIRE(h.Describe(run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  auto wt2 = h.PollWorkflowTask();
  api::History seen = wt2->history();
  REQUIRE(seen.events(seen.events_size() - 3).event_type() ==
          E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
  REQUIRE(h.Complete(*wt2, {EngineHarness::CompleteWorkflow("done")}).ok());
  REQUIRE(absl::IsFailedPrecondition(Signal(h, "wf", "after")));
}

TEST_CASE("Signal-with-start starts a run, or signals the open one") {
  EngineHarness h;
  api::SignalWithStartWorkflowExecutionRequest request;
  request.mutable_start()->set_workflow_id("project-web");
  request.mutable_start()->mutable_workflow_type()->set_name("Project");
  request.mutable_start()->mutable_task_queue()->set_name("q");
  request.set_signal_name("push");
  auto first = h.engine().SignalWithStartWorkflowExecution(request).value();
  REQUIRE(first.started());
  auto second = h.engine().SignalWithStartWorkflowExecution(request).value();
  REQUIRE_FALSE(second.started());
  REQUIRE(second.run_id() == first.run_id());
  auto types = h.EventTypes(first.run_id());
  REQUIRE(types[0] == E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
  REQUIRE(types[1] == E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
  REQUIRE(Count(types, E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 2);
}

TEST_CASE("A cancel request is seen by the workflow, which closes as canceled") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::StartTimer("t", absl::Hours(1))}).ok());
  api::RequestCancelWorkflowExecutionRequest cancel;
  cancel.mutable_workflow_execution()->set_workflow_id("wf");
  cancel.set_reason("superseded");
  REQUIRE(h.engine().RequestCancelWorkflowExecution(cancel).ok());
  REQUIRE(h.engine().RequestCancelWorkflowExecution(cancel).ok());  // idempotent
  auto wt = h.PollWorkflowTask();
  api::Command done;
  done.set_command_type(api::COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION);
  REQUIRE(h.Complete(*wt, {done}).ok());
  auto types = h.EventTypes(run);
  REQUIRE(Count(types, E::EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED) == 1);
  REQUIRE(types.back() == E::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED);
  REQUIRE(h.Describe(run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_CANCELED);
}

TEST_CASE("Continue-as-new closes the run and starts the next with a fresh history") {
  EngineHarness h;
  std::string run1 = h.Start("entity").value();
  api::Command next;
  next.set_command_type(api::COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION);
  *next.mutable_continue_as_new_workflow_execution_command_attributes()->mutable_input() =
      Text("state-2");
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {next}).ok());
  api::History history1 = h.History(run1);
  const auto& last = history1.events(history1.events_size() - 1);
  REQUIRE(last.event_type() == E::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
  std::string run2 =
      last.workflow_execution_continued_as_new_event_attributes().new_execution_run_id();
  REQUIRE(h.Describe(run1).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW);
  // The workflow id now names the new run, whose history starts over with the new input.
  api::DescribeWorkflowExecutionRequest current;
  current.mutable_execution()->set_workflow_id("entity");
  REQUIRE(h.engine()
              .DescribeWorkflowExecution(current)
              ->workflow_execution_info()
              .execution()
              .run_id() == run2);
  api::History history2 = h.History(run2);
  const auto& started = history2.events(0).workflow_execution_started_event_attributes();
  REQUIRE(started.input().payloads(0).data() == "state-2");
  REQUIRE(started.continued_execution_run_id() == run1);
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt->workflow_execution().run_id() == run2);
}

api::Command StartChild(const std::string& id, api::ParentClosePolicy policy) {
  api::Command command;
  command.set_command_type(api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION);
  auto* a = command.mutable_start_child_workflow_execution_command_attributes();
  a->set_workflow_id(id);
  a->mutable_workflow_type()->set_name("child");
  a->set_parent_close_policy(policy);
  return command;
}

TEST_CASE("A child workflow starts, completes, and its parent hears both") {
  EngineHarness h;
  std::string parent = h.Start("parent").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {StartChild("kid", api::PARENT_CLOSE_POLICY_TERMINATE)})
              .ok());
  // Describe names the child from its initiation: no run yet...
  auto described = h.Describe(parent);
  REQUIRE(described.pending_children_size() == 1);
  CHECK(described.pending_children(0).workflow_id() == "kid");
  CHECK(described.pending_children(0).workflow_type_name() == "child");
  CHECK(described.pending_children(0).run_id().empty());
  CHECK(described.pending_children(0).started_event_id() == 0);
  CHECK(described.pending_children(0).parent_close_policy() == api::PARENT_CLOSE_POLICY_TERMINATE);
  h.Advance(absl::ZeroDuration());          // the transfer task starts the child
  auto parent_task = h.PollWorkflowTask();  // ChildWorkflowExecutionStarted woke the parent
  auto child_task = h.PollWorkflowTask();
  REQUIRE(parent_task.has_value());
  REQUIRE(child_task.has_value());
  if (parent_task->workflow_execution().workflow_id() != "parent")
    std::swap(parent_task, child_task);
  REQUIRE(child_task->workflow_execution().workflow_id() == "kid");
  const auto& child_started =
      child_task->history().events(0).workflow_execution_started_event_attributes();
  REQUIRE(child_started.parent_workflow_execution().run_id() == parent);
  // ...then its run, once started; and nothing once it has closed (below).
  described = h.Describe(parent);
  REQUIRE(described.pending_children_size() == 1);
  CHECK(described.pending_children(0).run_id() == child_task->workflow_execution().run_id());
  CHECK(described.pending_children(0).started_event_id() != 0);
  REQUIRE(h.Complete(*parent_task, {}).ok());
  REQUIRE(h.Complete(*child_task, {EngineHarness::CompleteWorkflow("\"kid done\"")}).ok());
  h.Advance(absl::ZeroDuration());  // the transfer task tells the parent
  auto types = h.EventTypes(parent);
  REQUIRE(Count(types, E::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) == 1);
  REQUIRE(Count(types, E::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED) == 1);
  REQUIRE(Count(types, E::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED) == 1);
  CHECK(h.Describe(parent).pending_children_size() == 0);
  api::History history = h.History(parent);
  for (const auto& e : history.events()) {
    if (e.event_type() == E::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED) {
      REQUIRE(e.child_workflow_execution_completed_event_attributes().result().payloads(0).data() ==
              "\"kid done\"");
    }
  }
}

TEST_CASE("Parent close policies: terminate, request cancel, abandon") {
  EngineHarness h;
  std::string parent = h.Start("parent").value();
  REQUIRE(
      h.Complete(*h.PollWorkflowTask(), {StartChild("t", api::PARENT_CLOSE_POLICY_TERMINATE),
                                         StartChild("c", api::PARENT_CLOSE_POLICY_REQUEST_CANCEL),
                                         StartChild("a", api::PARENT_CLOSE_POLICY_ABANDON)})
          .ok());
  h.Advance(absl::ZeroDuration());
  // Let every child run its first task; then the parent is terminated.
  for (int i = 0; i < 4; ++i) {
    auto wt = h.PollWorkflowTask();
    if (!wt.has_value()) break;
    REQUIRE(h.Complete(*wt, {}).ok());
  }
  api::TerminateWorkflowExecutionRequest kill;
  kill.mutable_workflow_execution()->set_workflow_id("parent");
  REQUIRE(h.engine().TerminateWorkflowExecution(kill).ok());
  h.Advance(absl::ZeroDuration());
  auto status = [&](const std::string& id) {
    api::DescribeWorkflowExecutionRequest d;
    d.mutable_execution()->set_workflow_id(id);
    return h.engine().DescribeWorkflowExecution(d)->workflow_execution_info().status();
  };
  REQUIRE(status("t") == api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  REQUIRE(status("c") == api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  REQUIRE(status("a") == api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  api::DescribeWorkflowExecutionRequest d;
  d.mutable_execution()->set_workflow_id("c");
  std::string c_run =
      h.engine().DescribeWorkflowExecution(d)->workflow_execution_info().execution().run_id();
  REQUIRE(Count(h.EventTypes(c_run), E::EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED) == 1);
}

TEST_CASE("Signal and cancel of external workflows, and of one that does not exist") {
  EngineHarness h;
  std::string target = h.Start("target").value();
  std::string source = h.Start("source").value();
  for (int i = 0; i < 2; ++i) REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());
  api::Command signal;
  signal.set_command_type(api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION);
  signal.mutable_signal_external_workflow_execution_command_attributes()
      ->mutable_execution()
      ->set_workflow_id("target");
  signal.mutable_signal_external_workflow_execution_command_attributes()->set_signal_name("hello");
  api::Command cancel;
  cancel.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION);
  cancel.mutable_request_cancel_external_workflow_execution_command_attributes()->set_workflow_id(
      "nobody");
  REQUIRE(Signal(h, "source", "go").ok());
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt->workflow_execution().workflow_id() == "source");
  REQUIRE(h.Complete(*wt, {signal, cancel}).ok());
  h.Advance(absl::ZeroDuration());
  auto target_types = h.EventTypes(target);
  REQUIRE(Count(target_types, E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 1);
  auto source_types = h.EventTypes(source);
  REQUIRE(Count(source_types, E::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED) == 1);
  REQUIRE(Count(source_types, E::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED) ==
          1);
}

TEST_CASE("An external cancel's reason reaches the target as its cancel request's cause") {
  EngineHarness h;
  std::string target = h.Start("target").value();
  std::string source = h.Start("source").value();
  for (int i = 0; i < 2; ++i) REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());
  api::Command cancel;
  cancel.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION);
  auto* a = cancel.mutable_request_cancel_external_workflow_execution_command_attributes();
  a->set_workflow_id("target");
  a->set_reason("superseded: web-2");
  REQUIRE(Signal(h, "source", "go").ok());
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt->workflow_execution().workflow_id() == "source");
  REQUIRE(h.Complete(*wt, {cancel}).ok());
  h.Advance(absl::ZeroDuration());
  int requested = 0;
  const api::History history = h.History(target);
  for (const auto& e : history.events()) {
    if (e.event_type() != E::EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED) continue;
    ++requested;
    CHECK(e.workflow_execution_cancel_requested_event_attributes().cause() == "superseded: web-2");
  }
  CHECK(requested == 1);
}

// Keys of `table`, in order.
std::vector<std::string> KeysOf(EngineHarness& h, Table table) {
  std::vector<std::string> found;
  REQUIRE(h.store()
              .Scan(table, "", "", 0,
                    [&](std::string_view k, std::string_view) {
                      found.emplace_back(k);
                      return true;
                    })
              .ok());
  return found;
}

TEST_CASE("Signal request ids live beside the run's state and go with the run") {
  EngineHarness h;
  std::string run = h.Start("many-signals").value();
  // More ids than the state used to keep (1,000): the first is still known.
  for (int i = 0; i <= 1'000; ++i)
    REQUIRE(Signal(h, "many-signals", "s", absl::StrCat("r", i)).ok());
  REQUIRE(Signal(h, "many-signals", "s", "r0").ok());
  REQUIRE(Count(h.EventTypes(run), E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 1'001);
  // The state every transition rewrites does not carry them.
  auto stored = h.store().Get(Table::kExecutions, keys::Execution(run)).value();
  REQUIRE(stored.has_value());
  internal::ExecutionState state;
  REQUIRE(state.ParseFromString(*stored));
  CHECK(state.signal_request_ids_size() == 0);
  CHECK(stored->size() < 4'096);
  CHECK(KeysOf(h, Table::kMeta).size() >= 1'001);

  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::CompleteWorkflow("x")}).ok());
  h.Advance(absl::Hours(72));
  for (const std::string& key : KeysOf(h, Table::kMeta)) {
    CHECK(key.find(keys::SignalRequestPrefix(run)) != 0);
  }
}

TEST_CASE("A run takes a bounded number of signals") {
  EngineHarness h;
  REQUIRE(h.Start("busy").ok());
  for (int64_t i = 0; i < limits::kMaxSignalsPerRun; ++i) REQUIRE(Signal(h, "busy", "s").ok());
  absl::Status over = Signal(h, "busy", "s");
  REQUIRE(absl::IsResourceExhausted(over));
  CHECK_THAT(std::string(over.message()), Catch::Contains("signals, the limit per run"));
}

TEST_CASE("Closed runs are deleted with their histories once retention passes") {
  EngineHarness h;
  std::string run = h.Start("old").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::CompleteWorkflow("x")}).ok());
  std::string open = h.Start("open").value();
  h.Advance(absl::Hours(71));
  REQUIRE(h.History(run).events_size() == 5);
  h.Advance(absl::Hours(1));
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_run_id(run);
  REQUIRE(absl::IsNotFound(h.engine().DescribeWorkflowExecution(describe).status()));
  size_t history_keys = 0;
  (void)h.store().Scan(Table::kHistory, keys::HistoryPrefix(run),
                       keys::PrefixEnd(keys::HistoryPrefix(run)), 0,
                       [&](std::string_view, std::string_view) {
                         ++history_keys;
                         return true;
                       });
  REQUIRE(history_keys == 0);
  auto listed = h.engine().ListWorkflowExecutions({}).value();
  REQUIRE(listed.executions_size() == 1);
  REQUIRE(listed.executions(0).execution().run_id() == open);  // open runs stay
  CHECK(KeysOf(h, Table::kRetention).empty());                 // the fired retention timer is gone
}

TEST_CASE(
    "Retention timers live in their own table, and one an older version left among the "
    "timers still deletes its run") {
  EngineHarness h;
  std::string run = h.Start("old").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::CompleteWorkflow("x")}).ok());
  REQUIRE(KeysOf(h, Table::kTimers).empty());
  std::vector<std::string> retention = KeysOf(h, Table::kRetention);
  REQUIRE(retention.size() == 1);

  // Where versions before the retention table wrote it.
  std::optional<std::string> value = h.store().Get(Table::kRetention, retention[0]).value();
  REQUIRE(value.has_value());
  WriteBatch move;
  move.Delete(Table::kRetention, retention[0]);
  move.Put(Table::kTimers, retention[0], *value);
  REQUIRE(h.store().Commit(move).ok());

  h.Advance(absl::Hours(72));
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_run_id(run);
  REQUIRE(absl::IsNotFound(h.engine().DescribeWorkflowExecution(describe).status()));
  CHECK(KeysOf(h, Table::kTimers).empty());
  CHECK(KeysOf(h, Table::kRetention).empty());
}

TEST_CASE("List and count filter with the query language, and order by other fields") {
  EngineHarness h;
  for (const char* id : {"b", "a", "c"}) {
    api::StartWorkflowExecutionRequest request;
    request.mutable_workflow_type()->set_name(std::string(id) == "c" ? "Deploy" : "Project");
    REQUIRE(h.Start(id, request).ok());
    h.Advance(absl::Seconds(1));
  }
  api::ListWorkflowExecutionsRequest list;
  list.set_query(
      "WorkflowType = \"Project\" AND ExecutionStatus = \"Running\" ORDER BY WorkflowId ASC");
  auto page = h.engine().ListWorkflowExecutions(list).value();
  REQUIRE(page.executions_size() == 2);
  REQUIRE(page.executions(0).execution().workflow_id() == "a");
  REQUIRE(page.executions(1).execution().workflow_id() == "b");
  api::CountWorkflowExecutionsRequest count;
  count.set_query("WorkflowType = \"Deploy\"");
  REQUIRE(h.engine().CountWorkflowExecutions(count).value().count() == 1);
  api::ListWorkflowExecutionsRequest bad;
  bad.set_query("WorkflowType =");
  auto error = h.engine().ListWorkflowExecutions(bad);
  REQUIRE(absl::IsInvalidArgument(error.status()));
}

// An engine on a fault-injecting store, for what the harness's plain store cannot do: commits
// that fail after their write, and power cuts.
struct PowerCutWorld final : EngineListener {
  PowerCutWorld() {
    store.TrackUnsyncedWrites();
    Restart();
  }
  void TaskAdded(QueuedTask) override {}
  void TimerAdded(Table, const std::string&, absl::Time) override {}
  void RunChanged(const std::string&, bool, const kiln::api::v1::HistoryEvent*) override {}
  void Restart() {
    engine.reset();
    auto created = HistoryEngine::Create(&store, &clock, &ids, this);
    REQUIRE(created.ok());
    engine = std::move(*created);
  }

  MemoryStore base;
  FaultInjectingStore store{base};
  FakeClock clock;
  RandomIdGenerator ids{7};
  std::unique_ptr<HistoryEngine> engine;
};

// A commit that fails after its write leaves the write in the store, unsynced; a retry that
// finds it must not be told OK before it is durable, or a power cut takes back what the client
// was told is done.
TEST_CASE("A retried start or signal found applied is durable before it is acknowledged") {
  PowerCutWorld w;
  api::StartWorkflowExecutionRequest start;
  start.set_workflow_id("wf");
  start.mutable_workflow_type()->set_name("t");
  start.mutable_task_queue()->set_name("q");
  start.set_request_id("start-1");
  w.store.FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kAfterApply);
  REQUIRE(absl::IsUnavailable(w.engine->StartWorkflowExecution(start).status()));
  REQUIRE(w.store.unsynced_batches() == 1);
  auto started = w.engine->StartWorkflowExecution(start);  // the retry finds it
  REQUIRE(started.ok());
  CHECK(w.store.unsynced_batches() == 0);

  api::SignalWorkflowExecutionRequest signal;
  signal.mutable_workflow_execution()->set_workflow_id("wf");
  signal.set_signal_name("go");
  signal.set_request_id("signal-1");
  w.store.FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kAfterApply);
  REQUIRE(absl::IsUnavailable(w.engine->SignalWorkflowExecution(signal)));
  REQUIRE(w.store.unsynced_batches() == 1);
  REQUIRE(w.engine->SignalWorkflowExecution(signal).ok());  // the retry finds it
  CHECK(w.store.unsynced_batches() == 0);

  auto lost = w.store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 0);
  w.Restart();
  api::GetWorkflowExecutionHistoryRequest read;
  read.mutable_execution()->set_run_id(started->run_id());
  auto history = w.engine->ReadHistory(read);
  REQUIRE(history.ok());
  int signals = 0;
  for (const api::HistoryEvent& e : history->response.history().events()) {
    if (e.event_type() == E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) ++signals;
  }
  CHECK(signals == 1);
}

}  // namespace
}  // namespace kiln::orchestrator
