// State-machine tests of ResetWorkflowExecution: what the new run's history holds, the old
// run's end, the points it accepts and refuses, pending work at the point, retries.
#include <algorithm>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {
namespace {

using testing::EngineHarness;
using testing::Text;
using E = api::EventType;

absl::Status Signal(EngineHarness& h, const std::string& workflow_id, const std::string& name) {
  api::SignalWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(workflow_id);
  request.set_signal_name(name);
  *request.mutable_input() = Text(name);
  return h.engine().SignalWorkflowExecution(request);
}

api::ResetWorkflowExecutionRequest ResetRequest(const std::string& workflow_id,
                                                api::ResetPoint point, int64_t event_id = 0,
                                                const std::string& request_id = "") {
  api::ResetWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(workflow_id);
  request.set_reset_point(point);
  request.set_workflow_task_finish_event_id(event_id);
  request.set_reason("test");
  request.set_identity("tester");
  request.set_request_id(request_id);
  return request;
}

std::string CurrentRun(EngineHarness& h, const std::string& workflow_id) {
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_workflow_id(workflow_id);
  return h.engine()
      .DescribeWorkflowExecution(describe)
      ->workflow_execution_info()
      .execution()
      .run_id();
}

// Event ids 1..N with no gap.
void RequireGapless(const api::History& history) {
  for (int i = 0; i < history.events_size(); ++i) REQUIRE(history.events(i).event_id() == i + 1);
}

std::vector<std::string> SignalNames(const api::History& history, int64_t after_event_id = 0) {
  std::vector<std::string> names;
  for (const auto& e : history.events()) {
    if (e.event_id() > after_event_id &&
        e.event_type() == E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) {
      names.push_back(e.workflow_execution_signaled_event_attributes().signal_name());
    }
  }
  return names;
}

// A run that took a task, got signal "a", started a timer on it, and got signal "b".
std::string RunWithTwoSignals(EngineHarness& h, const std::string& workflow_id) {
  std::string run = h.Start(workflow_id).value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());  // events 1-4; waits for signals
  REQUIRE(Signal(h, workflow_id, "a").ok());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::StartTimer("t", absl::Hours(1))}).ok());
  REQUIRE(Signal(h, workflow_id, "b").ok());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());
  return run;
}

TEST_CASE("Reset makes a new run from a workflow task and replays the signals after it") {
  EngineHarness h;
  std::string old_run = RunWithTwoSignals(h, "wf");
  api::History old_history = h.History(old_run);

  auto reset =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_FIRST_WORKFLOW_TASK));
  REQUIRE(reset.ok());
  const std::string new_run = reset->run_id();
  REQUIRE(new_run != old_run);
  REQUIRE(CurrentRun(h, "wf") == new_run);

  // The old run is terminated, naming the new run.
  REQUIRE(h.Describe(old_run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  api::History old_after = h.History(old_run);
  RequireGapless(old_after);
  const auto& terminated = old_after.events(old_after.events_size() - 1);
  REQUIRE(terminated.event_type() == E::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
  REQUIRE(terminated.workflow_execution_terminated_event_attributes().reason() ==
          absl::StrCat("reset to run ", new_run, ": test"));

  // The new run: the old history up to the first task's started event (3), the reset marker,
  // the signals received after it, a new task. The timer started after the point is not there.
  api::History history = h.History(new_run);
  RequireGapless(history);
  REQUIRE(h.EventTypes(new_run) ==
          std::vector<E>{
              E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
              E::EVENT_TYPE_WORKFLOW_TASK_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_FAILED,
              E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
              E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED});
  for (int i = 0; i < 3; ++i) {
    REQUIRE(history.events(i).SerializeAsString() == old_history.events(i).SerializeAsString());
  }
  const auto& failed = history.events(3).workflow_task_failed_event_attributes();
  REQUIRE(failed.cause() == api::WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW);
  REQUIRE(failed.scheduled_event_id() == 2);
  REQUIRE(failed.started_event_id() == 3);
  REQUIRE(failed.base_run_id() == old_run);
  REQUIRE(failed.new_run_id() == new_run);
  REQUIRE(SignalNames(history) == std::vector<std::string>{"a", "b"});
  auto described = h.Describe(new_run);
  REQUIRE(described.workflow_execution_info().status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  REQUIRE(described.workflow_execution_info().first_run_id() == old_run);
  REQUIRE(described.pending_timers().empty());

  // The worker gets the whole history and goes on from there.
  auto task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  REQUIRE(task->workflow_execution().run_id() == new_run);
  REQUIRE(task->history().events(0).event_id() == 1);
  REQUIRE(h.Complete(*task, {EngineHarness::CompleteWorkflow("done")}).ok());
  REQUIRE(h.Describe(new_run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  RequireGapless(h.History(new_run));
}

TEST_CASE("Reset excluding signals leaves out those received after the point") {
  EngineHarness h;
  RunWithTwoSignals(h, "wf");
  api::ResetWorkflowExecutionRequest request =
      ResetRequest("wf", api::RESET_POINT_FIRST_WORKFLOW_TASK);
  request.set_exclude_signals(true);
  auto reset = h.engine().ResetWorkflowExecution(request);
  REQUIRE(reset.ok());
  REQUIRE(h.EventTypes(reset->run_id()) == std::vector<E>{E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                                                          E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                                                          E::EVENT_TYPE_WORKFLOW_TASK_STARTED,
                                                          E::EVENT_TYPE_WORKFLOW_TASK_FAILED,
                                                          E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED});
}

TEST_CASE("Reset accepts workflow task events and refuses any other point") {
  EngineHarness h;
  std::string run = RunWithTwoSignals(h, "wf");
  // Events: 1 started, 2 scheduled, 3 started, 4 completed, 5 signaled a, 6 scheduled,
  // 7 started, 8 completed, 9 timer started, 10 signaled b, ...
  std::vector<E> types = h.EventTypes(run);
  REQUIRE(types[4] == E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
  REQUIRE(types[7] == E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED);

  auto signal_point =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_UNSPECIFIED, 5));
  REQUIRE(absl::IsInvalidArgument(signal_point.status()));
  REQUIRE(absl::StrContains(signal_point.status().message(), "WORKFLOW_EXECUTION_SIGNALED"));
  REQUIRE(absl::StrContains(signal_point.status().message(), "not a workflow task event"));
  auto beyond =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_UNSPECIFIED, 999));
  REQUIRE(absl::IsInvalidArgument(beyond.status()));
  REQUIRE(CurrentRun(h, "wf") == run);  // nothing happened

  // A WorkflowTaskScheduled event names the task it scheduled: the point is its started event.
  auto by_scheduled = h.engine().ResetWorkflowExecution(
      ResetRequest("wf", api::RESET_POINT_UNSPECIFIED, 6, "by-scheduled"));
  REQUIRE(by_scheduled.ok());
  api::History history = h.History(by_scheduled->run_id());
  REQUIRE(history.events(6).event_type() == E::EVENT_TYPE_WORKFLOW_TASK_STARTED);
  REQUIRE(history.events(7).event_type() == E::EVENT_TYPE_WORKFLOW_TASK_FAILED);
  REQUIRE(SignalNames(history, 7) == std::vector<std::string>{"b"});
  REQUIRE(SignalNames(history) == std::vector<std::string>{"a", "b"});

  // A WorkflowTaskCompleted event (of the new run, which has the old one's ids up to 7): the
  // same point. The new run is closed-then-reset: the run from the line above is terminated.
  auto by_completed = h.engine().ResetWorkflowExecution(
      ResetRequest("wf", api::RESET_POINT_UNSPECIFIED, 4, "by-completed"));
  REQUIRE(by_completed.ok());
  REQUIRE(h.Describe(by_scheduled->run_id()).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  REQUIRE(h.EventTypes(by_completed->run_id())[3] == E::EVENT_TYPE_WORKFLOW_TASK_FAILED);
}

TEST_CASE("Reset dispatches the activities and timers pending at the point again") {
  EngineHarness h;
  std::string old_run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(),
                     {EngineHarness::ScheduleActivity("a1", "work", absl::Minutes(5)),
                      EngineHarness::StartTimer("t", absl::Hours(1))})
              .ok());
  auto activity = h.PollActivityTask();  // started in the old run, never answered
  REQUIRE(activity.has_value());
  REQUIRE(Signal(h, "wf", "go").ok());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());

  auto reset =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_LAST_WORKFLOW_TASK));
  REQUIRE(reset.ok());
  const std::string new_run = reset->run_id();
  auto described = h.Describe(new_run);
  REQUIRE(described.pending_activities_size() == 1);
  REQUIRE(described.pending_activities(0).activity_id() == "a1");
  REQUIRE(described.pending_activities(0).state() == api::PENDING_ACTIVITY_STATE_SCHEDULED);
  REQUIRE(described.pending_timers_size() == 1);
  // The old attempt's answer is refused (its run is closed); the new run's attempt runs.
  api::RespondActivityTaskCompletedRequest late;
  late.set_task_token(activity->task_token());
  REQUIRE_FALSE(h.engine().RespondActivityTaskCompleted(late).ok());
  auto again = h.PollActivityTask();
  REQUIRE(again.has_value());
  REQUIRE(again->workflow_execution().run_id() == new_run);
  api::RespondActivityTaskCompletedRequest done;
  done.set_task_token(again->task_token());
  *done.mutable_result() = Text("ok");
  REQUIRE(h.engine().RespondActivityTaskCompleted(done).ok());
  // The timer keeps its fire time.
  h.Advance(absl::Hours(1) + absl::Seconds(1));
  std::vector<E> types = h.EventTypes(new_run);
  REQUIRE(std::count(types.begin(), types.end(), E::EVENT_TYPE_TIMER_FIRED) == 1);
  REQUIRE(std::count(types.begin(), types.end(), E::EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 1);
  RequireGapless(h.History(new_run));
  REQUIRE(h.Describe(old_run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
}

TEST_CASE("An activity the workflow asked to cancel is canceled at once in the new run") {
  EngineHarness h;
  std::string old_run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(),
                     {EngineHarness::ScheduleActivity("a1", "work", absl::Minutes(5))})
              .ok());
  REQUIRE(h.PollActivityTask().has_value());  // started: a cancel request has to wait for it
  const int64_t scheduled = 5;
  REQUIRE(h.EventTypes(old_run)[scheduled - 1] == E::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
  REQUIRE(Signal(h, "wf", "stop").ok());
  api::Command cancel;
  cancel.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK);
  cancel.mutable_request_cancel_activity_task_command_attributes()->set_scheduled_event_id(
      scheduled);
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {cancel}).ok());
  REQUIRE(Signal(h, "wf", "again").ok());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());

  auto reset =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_LAST_WORKFLOW_TASK));
  REQUIRE(reset.ok());
  std::vector<E> types = h.EventTypes(reset->run_id());
  REQUIRE(std::count(types.begin(), types.end(), E::EVENT_TYPE_ACTIVITY_TASK_CANCELED) == 1);
  REQUIRE(h.Describe(reset->run_id()).pending_activities().empty());
  REQUIRE_FALSE(h.PollActivityTask().has_value());
  RequireGapless(h.History(reset->run_id()));
}

TEST_CASE("Reset refuses a point where a child workflow is pending") {
  EngineHarness h;
  h.Start("parent").value();
  api::Command child;
  child.set_command_type(api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION);
  auto* a = child.mutable_start_child_workflow_execution_command_attributes();
  a->set_workflow_id("kid");
  a->mutable_workflow_type()->set_name("Kid");
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {child}).ok());
  REQUIRE(Signal(h, "parent", "go").ok());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());
  auto refused = h.engine().ResetWorkflowExecution(
      ResetRequest("parent", api::RESET_POINT_LAST_WORKFLOW_TASK));
  REQUIRE(absl::IsFailedPrecondition(refused.status()));
  REQUIRE(absl::StrContains(refused.status().message(), "child workflow"));
  // Before the child was initiated, it is allowed.
  REQUIRE(h.engine()
              .ResetWorkflowExecution(ResetRequest("parent", api::RESET_POINT_FIRST_WORKFLOW_TASK))
              .ok());
}

TEST_CASE("Reset while a workflow task runs replays the signals it buffered") {
  EngineHarness h;
  std::string old_run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {}).ok());
  REQUIRE(Signal(h, "wf", "a").ok());
  auto running = h.PollWorkflowTask();  // started, not answered
  REQUIRE(running.has_value());
  REQUIRE(Signal(h, "wf", "b").ok());  // buffered behind the running task
  auto reset =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_LAST_WORKFLOW_TASK));
  REQUIRE(reset.ok());
  REQUIRE(SignalNames(h.History(reset->run_id())) == std::vector<std::string>{"a", "b"});
  // The old run's history records b too, before its end.
  api::History old_history = h.History(old_run);
  RequireGapless(old_history);
  REQUIRE(SignalNames(old_history) == std::vector<std::string>{"a", "b"});
  REQUIRE(old_history.events(old_history.events_size() - 1).event_type() ==
          E::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
  // The old task's answer is refused.
  api::RespondWorkflowTaskCompletedRequest late;
  late.set_task_token(running->task_token());
  REQUIRE_FALSE(h.engine().RespondWorkflowTaskCompleted(late).ok());
}

TEST_CASE("A retried reset answers with the run it created") {
  EngineHarness h;
  std::string old_run = RunWithTwoSignals(h, "wf");
  auto request = ResetRequest("wf", api::RESET_POINT_FIRST_WORKFLOW_TASK, 0, "req-1");
  auto first = h.engine().ResetWorkflowExecution(request);
  REQUIRE(first.ok());
  // Named by workflow id only: the current run is the one this request made.
  auto again = h.engine().ResetWorkflowExecution(request);
  REQUIRE(again.ok());
  REQUIRE(again->run_id() == first->run_id());
  // Named by the old run: its reset record answers.
  request.mutable_workflow_execution()->set_run_id(old_run);
  auto by_run = h.engine().ResetWorkflowExecution(request);
  REQUIRE(by_run.ok());
  REQUIRE(by_run->run_id() == first->run_id());
  REQUIRE(CurrentRun(h, "wf") == first->run_id());
  std::vector<E> old_types = h.EventTypes(old_run);
  REQUIRE(std::count(old_types.begin(), old_types.end(),
                     E::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED) == 1);
  REQUIRE(h.store().Get(Table::kMeta, keys::ResetRequest(old_run, "req-1"))->value() ==
          first->run_id());
}

TEST_CASE("A closed run can be reset and an older run only when the current one is closed") {
  EngineHarness h;
  std::string old_run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::CompleteWorkflow("v1")}).ok());
  auto reset =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_LAST_WORKFLOW_TASK));
  REQUIRE(reset.ok());
  // The completed run stays completed: nothing is appended to it.
  REQUIRE(h.Describe(old_run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  REQUIRE(h.EventTypes(old_run).back() == E::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  REQUIRE(CurrentRun(h, "wf") == reset->run_id());
  // The old run again, while the new one is open: refused.
  auto older = ResetRequest("wf", api::RESET_POINT_LAST_WORKFLOW_TASK);
  older.mutable_workflow_execution()->set_run_id(old_run);
  auto refused = h.engine().ResetWorkflowExecution(older);
  REQUIRE(absl::IsFailedPrecondition(refused.status()));
  REQUIRE(absl::StrContains(refused.status().message(), "is not the current run"));
  // Once the current run closes, it is allowed.
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::CompleteWorkflow("v2")}).ok());
  REQUIRE(h.engine().ResetWorkflowExecution(older).ok());
}

TEST_CASE("A run with no completed workflow task has no symbolic point") {
  EngineHarness h;
  h.Start("wf").value();
  auto first =
      h.engine().ResetWorkflowExecution(ResetRequest("wf", api::RESET_POINT_FIRST_WORKFLOW_TASK));
  REQUIRE(absl::IsFailedPrecondition(first.status()));
  auto missing =
      h.engine().ResetWorkflowExecution(ResetRequest("nope", api::RESET_POINT_FIRST_WORKFLOW_TASK));
  REQUIRE(absl::IsNotFound(missing.status()));
}

}  // namespace
}  // namespace kiln::orchestrator
