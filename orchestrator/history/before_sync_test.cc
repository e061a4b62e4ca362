// A workflow task started at schedule goes to its poller before its transition's commit (and
// an activity's after it): the order, the answer built ahead against the one a poll gets after
// the commit, and what becomes of a task handed out when its commit then fails.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/clock.h"
#include "common/ids.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/history/engine_listener.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

using testing::EngineHarness;
using testing::Text;

constexpr char kInstance[] = "worker-instance-1";

// Plays matching with one poller always waiting on every queue, and writes down, in order, each
// commit the store sees and each task handed to the poller.
class WaitingPoller final : public EngineListener {
 public:
  explicit WaitingPoller(std::vector<std::string>* log) : log_(log) {}

  void TaskAdded(QueuedTask task) override {}
  void TimerAdded(Table, const std::string&, absl::Time) override {}
  void RunChanged(const std::string&, bool, const api::HistoryEvent*) override {}
  std::optional<TaskReservation> ReservePoller(const QueuedTask& task) override {
    preferred.push_back(task.preferred_worker_instance);
    return TaskReservation{.poll_id = ++next_poll_,
                           .identity = "poller",
                           .worker_instance_id = kInstance,
                           .kind = task.kind,
                           .ns = task.ns,
                           .queue = task.queue};
  }
  void FulfilReservation(const TaskReservation& reservation, QueuedTask task) override {
    log_->push_back(task.kind == keys::TaskKind::kWorkflow ? "workflow task" : "activity task");
    handed.push_back(std::move(task));
  }
  void ReleaseReservation(const TaskReservation& reservation) override {
    log_->push_back("released");
  }

  std::vector<QueuedTask> handed;
  // The worker instance each reservation asked for first.
  std::vector<std::string> preferred;

 private:
  std::vector<std::string>* log_;
  uint64_t next_poll_ = 0;
};

struct Engine {
  explicit Engine(bool before_sync = true, bool on_caller = true) {
    store.SetCommitFaultPolicy([this](const WriteBatch&) {
      log.push_back("commit");
      return std::optional<FaultInjectingStore::CommitFault>();
    });
    EngineOptions options;
    options.workflow_tasks_before_sync = before_sync;
    options.quiet_commits_on_caller = on_caller;
    engine = HistoryEngine::Create(&store, &clock, &ids, &poller, options).value();
    log.clear();  // The task id allocator's first block.
  }
  std::string Start(const std::string& id) {
    api::StartWorkflowExecutionRequest request;
    request.set_workflow_id(id);
    request.mutable_workflow_type()->set_name("wf");
    request.mutable_task_queue()->set_name("q");
    return engine->StartWorkflowExecution(request).value().run_id();
  }
  absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> Complete(
      const api::PollWorkflowTaskQueueResponse& task, api::Command command) {
    api::RespondWorkflowTaskCompletedRequest request;
    request.set_task_token(task.task_token());
    request.set_sticky_worker(kInstance);
    *request.add_commands() = std::move(command);
    return engine->RespondWorkflowTaskCompleted(request);
  }
  absl::Status CompleteActivity(const QueuedTask& task) {
    auto started = engine->RecordActivityTaskStarted(task, "poller", task.started_request_id);
    if (!started.ok()) return started.status();
    api::RespondActivityTaskCompletedRequest request;
    request.set_task_token(started->task_token());
    *request.mutable_result() = Text("\"done\"");
    return engine->RespondActivityTaskCompleted(request).status();
  }
  // The answer a poll of `task` gets after the commit (a retry of its start).
  api::PollWorkflowTaskQueueResponse PolledAfter(const QueuedTask& task) {
    return engine
        ->RecordWorkflowTaskStarted(task, "poller", task.started_request_id, std::nullopt,
                                    kInstance)
        .value();
  }

  std::vector<std::string> log;
  MemoryStore base;
  FaultInjectingStore store{base};
  FakeClock clock;
  RandomIdGenerator ids{11};
  WaitingPoller poller{&log};
  std::unique_ptr<HistoryEngine> engine;
};

TEST_CASE(
    "A workflow task started at schedule is handed out before its commit and an activity "
    "after it") {
  Engine e;
  const std::string run = e.Start("ahead");
  REQUIRE(e.log == std::vector<std::string>{"workflow task", "commit"});
  REQUIRE(e.poller.handed.size() == 1);
  const QueuedTask first = e.poller.handed[0];
  REQUIRE(first.answer != nullptr);
  // Built ahead as a poll would get it after the commit: the whole history of a new run.
  CHECK(first.answer->SerializeAsString() == e.PolledAfter(first).SerializeAsString());
  CHECK(first.answer->history().events_size() == 3);

  e.log.clear();
  REQUIRE(e.Complete(*first.answer, EngineHarness::ScheduleActivity("a1", "act", absl::Seconds(10)))
              .ok());
  CHECK(e.log == std::vector<std::string>{"commit", "activity task"});
  const QueuedTask activity = e.poller.handed.back();
  // Its answer built by the transition too, as a poll would get it.
  REQUIRE(activity.activity_answer != nullptr);
  CHECK(activity.activity_answer->SerializeAsString() ==
        e.engine->RecordActivityTaskStarted(activity, "poller", activity.started_request_id)
            ->SerializeAsString());

  e.log.clear();
  REQUIRE(e.CompleteActivity(activity).ok());
  CHECK(e.log == std::vector<std::string>{"workflow task", "commit"});
  const QueuedTask second = e.poller.handed.back();
  REQUIRE(second.answer != nullptr);
  // The worker completed the first task sticky: it gets only what followed that task.
  CHECK(second.answer->history().events(0).event_id() ==
        second.answer->previous_started_event_id() + 1);
  CHECK(second.answer->SerializeAsString() == e.PolledAfter(second).SerializeAsString());
  // The first task had no sticky worker to prefer, the activity none at all; the second went
  // to the worker holding the run, if it had a poll waiting.
  CHECK(e.poller.preferred == std::vector<std::string>{"", "", kInstance});
  REQUIRE(e.Complete(*second.answer, EngineHarness::CompleteWorkflow("\"ok\"")).ok());
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_run_id(run);
  CHECK(e.engine->DescribeWorkflowExecution(describe)->workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
}

TEST_CASE(
    "Off: a workflow task started at schedule is handed out after its commit with its "
    "answer") {
  Engine e(/*before_sync=*/false);
  e.Start("after");
  CHECK(e.log == std::vector<std::string>{"commit", "workflow task"});
  REQUIRE(e.poller.handed.at(0).answer != nullptr);
  CHECK(e.poller.handed.at(0).answer->SerializeAsString() ==
        e.PolledAfter(e.poller.handed.at(0)).SerializeAsString());
}

TEST_CASE("A quiet transition with nothing to hand out while it syncs commits on its own thread") {
  for (const bool on_caller : {true, false}) {
    INFO("quiet_commits_on_caller=" << on_caller);
    Engine e(/*before_sync=*/true, on_caller);
    e.Start("caller");
    // Its workflow task went out while the commit synced: through the store's writer.
    CHECK(e.store.commits_on_caller() == 0);
    const api::PollWorkflowTaskQueueResponse first = *e.poller.handed.at(0).answer;
    REQUIRE(
        e.Complete(first, EngineHarness::ScheduleActivity("a1", "act", absl::Seconds(10))).ok());
    // The activity waits for the sync: nothing to do meanwhile.
    CHECK(e.store.commits_on_caller() == (on_caller ? 1 : 0));
    REQUIRE(e.CompleteActivity(e.poller.handed.back()).ok());
    CHECK(e.store.commits_on_caller() == (on_caller ? 1 : 0));
    REQUIRE(
        e.Complete(*e.poller.handed.back().answer, EngineHarness::CompleteWorkflow("\"ok\"")).ok());
    CHECK(e.store.commits_on_caller() == (on_caller ? 2 : 0));
  }
  // With workflow tasks after the sync, the start has nothing to do meanwhile either.
  Engine after(/*before_sync=*/false);
  after.Start("after");
  CHECK(after.store.commits_on_caller() == 1);
}

TEST_CASE("A workflow task handed out before a commit that fails is refused at its completion") {
  Engine e;
  e.Start("refused");
  const api::PollWorkflowTaskQueueResponse first = *e.poller.handed.at(0).answer;
  REQUIRE(e.Complete(first, EngineHarness::ScheduleActivity("a1", "act", absl::Seconds(10))).ok());
  const QueuedTask activity = e.poller.handed.back();

  // The activity's completion does not land: the workflow task it made went out all the same.
  e.store.FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kBeforeApply,
                          absl::InternalError("disk said no"));
  e.log.clear();
  CHECK_FALSE(e.CompleteActivity(activity).ok());
  // (A commit the fault takes is not logged: the store's policy is not asked.)
  CHECK(e.log == std::vector<std::string>{"workflow task"});
  const api::PollWorkflowTaskQueueResponse lost = *e.poller.handed.back().answer;
  // Its completion names a start the store never held: refused, nothing recorded.
  auto refused = e.Complete(lost, EngineHarness::CompleteWorkflow("\"too early\""));
  INFO(refused.status());
  CHECK(absl::IsFailedPrecondition(refused.status()));

  // The activity's worker answers again: a new workflow task, and the run completes.
  e.log.clear();
  REQUIRE(e.CompleteActivity(activity).ok());
  // The failed commit dropped the run's cached events: the task's partial history is read
  // after the commit, as without this path.
  CHECK(e.log == std::vector<std::string>{"commit", "workflow task"});
  REQUIRE(e.poller.handed.back().answer == nullptr);
  const api::PollWorkflowTaskQueueResponse second = e.PolledAfter(e.poller.handed.back());
  CHECK(second.task_token() != lost.task_token());
  REQUIRE(e.Complete(second, EngineHarness::CompleteWorkflow("\"ok\"")).ok());
  api::GetWorkflowExecutionHistoryRequest read;
  read.mutable_execution()->set_run_id(second.workflow_execution().run_id());
  auto history = e.engine->ReadHistory(read).value().response.history();
  int started = 0;
  for (const auto& event : history.events()) {
    if (event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED) ++started;
    CHECK(event.event_type() != api::EVENT_TYPE_WORKFLOW_TASK_FAILED);
  }
  CHECK(started == 2);
  CHECK(history.events(history.events_size() - 1).event_type() ==
        api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
}

}  // namespace
}  // namespace kiln::orchestrator
