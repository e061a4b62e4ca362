// The built-in "__stack_trace" query against real histories (EngineHarness): what a workflow's
// code waits on after each task, with the source line of each await, as the live instance and a
// replica replayed from the history (how a query is answered) both see it.
#include "sdk/stack_trace.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"
#include "sdk/workflow_instance.h"

namespace kiln::sdk {
namespace {

using orchestrator::testing::EngineHarness;
using orchestrator::testing::Text;

// The lines of the awaits below, set as the workflow runs (the test reads them afterwards).
int receive_line = 0;
int cancel_line = 0;
int activity_line = 0;
int timer_line = 0;
int condition_line = 0;

// Waits for signal "go"; then runs activity "build" with a 5-minute timer started beside it (not
// awaited); then waits for the first of that timer and the condition "a stop signal is queued".
Task<absl::StatusOr<api::Payloads>> Waits(WorkflowContext& ctx, api::Payloads input) {
  SignalChannel& go = ctx.GetSignalChannel("go");
  SignalChannel& stop = ctx.GetSignalChannel("stop");
  auto cancel = ctx.CancellationRequested();
  cancel_line = __LINE__ - 1;
  auto received = go.Receive();
  receive_line = __LINE__ - 1;
  co_await received;
  ActivityOptions options;
  options.activity_id = "build-1";
  auto build = ctx.ExecuteActivity("build", input, options);
  activity_line = __LINE__ - 1;
  auto timer = ctx.Sleep(absl::Minutes(5));
  timer_line = __LINE__ - 1;
  auto built = co_await build;
  if (!built.ok()) co_return built.status();
  auto stopped = ctx.WaitCondition([&stop] { return stop.pending() > 0; });
  condition_line = __LINE__ - 1;
  size_t first = co_await WhenAny(timer, stopped);
  co_return Text(first == 0 ? "timer" : "stopped");
}

WorkflowInfo Info(const std::string& workflow_id, const std::string& run_id) {
  WorkflowInfo info;
  info.workflow_id = workflow_id;
  info.run_id = run_id;
  info.workflow_type = "Waits";
  return info;
}

// Runs workflow tasks of run "wf" on one live instance; each step checks the stack trace of the
// live instance against the one a replica replayed from the history gives.
class Run {
 public:
  Run() {
    run_id_ = h_.Start("wf").value();
    live_ = std::make_unique<WorkflowInstance>(Waits, Info("wf", run_id_));
  }
  EngineHarness& harness() { return h_; }

  // Runs the pending workflow task, if any.
  void Step() {
    auto task = h_.PollWorkflowTask();
    REQUIRE(task.has_value());
    auto commands = live_->ProcessWorkflowTask(task->history());
    REQUIRE(commands.ok());
    REQUIRE(h_.Complete(*task, *commands).ok());
  }
  void Signal(const std::string& name) {
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id("wf");
    request.set_signal_name(name);
    REQUIRE(h_.engine().SignalWorkflowExecution(request).ok());
    Step();
  }
  void CompleteActivity() {
    auto task = h_.PollActivityTask();
    REQUIRE(task.has_value());
    api::RespondActivityTaskCompletedRequest done;
    done.set_task_token(task->task_token());
    REQUIRE(h_.engine().RespondActivityTaskCompleted(done).ok());
    Step();
  }

  // The live instance's answer, which a replica replayed from the history must give too.
  api::WorkflowStackTrace Stack() {
    api::WorkflowStackTrace live = live_->StackTrace();
    WorkflowInstance replica(Waits, Info("wf", run_id_));
    REQUIRE(replica.Replay(h_.History(run_id_)).ok());
    auto answer = replica.Query(kStackTraceQuery, {});
    REQUIRE(answer.ok());
    REQUIRE(answer->payloads(0).metadata().at("encoding") == "json/plain");
    auto replayed = DecodeStackTrace(*answer);
    REQUIRE(replayed.ok());
    CHECK(replayed->DebugString() == live.DebugString());
    return live;
  }

 private:
  EngineHarness h_;
  std::string run_id_;
  std::unique_ptr<WorkflowInstance> live_;
};

void CheckLocation(const api::PendingAwait& await, int line) {
  INFO(await.DebugString());
  CHECK(await.location().file() == "sdk/stack_trace_test.cc");
  CHECK(await.location().line() == line);
  CHECK(await.location().function() == std::string("Waits"));
}

TEST_CASE("The stack trace names each pending await of the code with its source line") {
  Run run;
  run.Step();

  // Waiting for "go"; the cancellation future exists but nothing awaits it.
  api::WorkflowStackTrace trace = run.Stack();
  CHECK(trace.workflow_id() == "wf");
  CHECK(trace.workflow_type() == "Waits");
  REQUIRE(trace.pending_size() == 2);
  CHECK(trace.pending(0).kind() == api::AWAIT_KIND_SIGNAL);
  CHECK(trace.pending(0).signal_name() == "go");
  CHECK(trace.pending(0).awaited());
  CheckLocation(trace.pending(0), receive_line);
  CHECK(trace.pending(1).kind() == api::AWAIT_KIND_CANCELLATION);
  CHECK_FALSE(trace.pending(1).awaited());
  CheckLocation(trace.pending(1), cancel_line);

  // Waiting on the activity; the timer runs beside it, not awaited, with its fire time.
  run.Signal("go");
  trace = run.Stack();
  REQUIRE(trace.pending_size() == 3);
  const api::PendingAwait& activity = trace.pending(0);
  CHECK(activity.kind() == api::AWAIT_KIND_ACTIVITY);
  CHECK(activity.activity_type() == "build");
  CHECK(activity.activity_id() == "build-1");
  CHECK(activity.awaited());
  CheckLocation(activity, activity_line);
  const api::PendingAwait& timer = trace.pending(1);
  CHECK(timer.kind() == api::AWAIT_KIND_TIMER);
  CHECK_FALSE(timer.awaited());
  CHECK(FromProto(timer.timer_duration()) == absl::Minutes(5));
  CHECK(FromProto(timer.fire_time()) == run.harness().clock().Now() + absl::Minutes(5));
  CheckLocation(timer, timer_line);
  CHECK(trace.pending(2).kind() == api::AWAIT_KIND_CANCELLATION);

  // The first of the timer and the condition: both awaited (through WhenAny).
  run.CompleteActivity();
  trace = run.Stack();
  REQUIRE(trace.pending_size() == 3);
  CHECK(trace.pending(0).kind() == api::AWAIT_KIND_TIMER);
  CHECK(trace.pending(0).awaited());
  CHECK(trace.pending(1).kind() == api::AWAIT_KIND_CONDITION);
  CHECK(trace.pending(1).awaited());
  CheckLocation(trace.pending(1), condition_line);

  // The condition comes true with the signal: the workflow completes and waits on nothing.
  run.Signal("stop");
  trace = run.Stack();
  CHECK(trace.pending_size() == 0);
  auto types = run.harness().EventTypes(trace.run_id());
  CHECK(types.back() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  auto result = run.harness().History(trace.run_id());
  CHECK(result.events(result.events_size() - 1)
            .workflow_execution_completed_event_attributes()
            .result()
            .payloads(0)
            .data() == "stopped");
}

Task<absl::StatusOr<api::Payloads>> OwnStack(WorkflowContext& ctx, api::Payloads input) {
  ctx.SetQueryHandler(kStackTraceQuery, [](const api::Payloads&) -> absl::StatusOr<api::Payloads> {
    return Text("mine");
  });
  co_await ctx.GetSignalChannel("never").Receive();
  co_return input;
}

TEST_CASE("A workflow's own __stack_trace handler answers instead of the built-in one") {
  WorkflowInstance instance(OwnStack, Info("own", ""));
  EngineHarness h;
  REQUIRE(h.Start("own").ok());
  auto task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  REQUIRE(instance.ProcessWorkflowTask(task->history()).ok());
  auto answer = instance.Query(kStackTraceQuery, {});
  REQUIRE(answer.ok());
  CHECK(answer->payloads(0).data() == "mine");
  // The built-in one is named among the handlers an unknown query lists.
  auto unknown = instance.Query("nope", {});
  CHECK(absl::IsNotFound(unknown.status()));
  CHECK(absl::StrContains(unknown.status().message(), "__stack_trace"));
  // Not a stack trace: DecodeStackTrace says so rather than answering an empty one.
  CHECK(absl::IsInvalidArgument(DecodeStackTrace(*answer).status()));
}

int child_line = 0;

Task<absl::StatusOr<api::Payloads>> Parent(WorkflowContext& ctx, api::Payloads input) {
  ChildWorkflowOptions options;
  options.workflow_id = "the-child";
  ChildWorkflow child = ctx.ExecuteChildWorkflow("Child", input, options);
  child_line = __LINE__ - 1;
  co_return co_await child.result;
}

TEST_CASE("The stack trace shows a child workflow starting then running") {
  EngineHarness h;
  const std::string run_id = h.Start("parent").value();
  WorkflowInfo info;
  info.workflow_id = "parent";
  info.run_id = run_id;
  WorkflowInstance parent(Parent, info);
  auto task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  auto commands = parent.ProcessWorkflowTask(task->history());
  REQUIRE(commands.ok());
  REQUIRE(h.Complete(*task, *commands).ok());

  api::WorkflowStackTrace trace = parent.StackTrace();
  REQUIRE(trace.pending_size() == 1);
  const api::PendingAwait& starting = trace.pending(0);
  CHECK(starting.kind() == api::AWAIT_KIND_CHILD_WORKFLOW);
  CHECK(starting.workflow_id() == "the-child");
  CHECK(starting.workflow_type() == "Child");
  CHECK(starting.awaited());
  CHECK_FALSE(starting.child_started());
  CHECK(starting.location().line() == child_line);
  CHECK(starting.location().function() == std::string("Parent"));

  // The transfer starts the child; the parent's next task records it started.
  h.Advance(absl::ZeroDuration());
  task = h.PollWorkflowTask();
  while (task.has_value() && task->workflow_execution().run_id() != run_id) {
    task = h.PollWorkflowTask();  // the child's own first task: not this test's concern
  }
  REQUIRE(task.has_value());
  commands = parent.ProcessWorkflowTask(task->history());
  REQUIRE(commands.ok());
  trace = parent.StackTrace();
  REQUIRE(trace.pending_size() == 1);
  CHECK(trace.pending(0).child_started());
  CHECK(trace.pending(0).awaited());
}

}  // namespace
}  // namespace kiln::sdk
