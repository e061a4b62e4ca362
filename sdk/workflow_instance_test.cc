// The coroutine runtime against real histories: an in-process history engine (fake clock,
// in-memory store) produces the workflow tasks, the WorkflowInstance answers them.
#include "sdk/workflow_instance.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/engine_harness.h"
#include "sdk/workflow_worker.h"

namespace kiln::sdk {
namespace {

using orchestrator::testing::EngineHarness;

api::Payloads Text(const std::string& s) {
  api::Payloads p;
  p.add_payloads()->set_data(s);
  return p;
}
std::string Data(const api::Payloads& p) { return p.payloads_size() ? p.payloads(0).data() : ""; }

// Runs workflows against the engine, answering activities with `activity(type, input)`.
class Driver {
 public:
  explicit Driver(WorkflowFn fn, bool replay_every_task = false)
      : fn_(std::move(fn)), replay_every_task_(replay_every_task) {}
  // Other workflow types (children) by name.
  std::map<std::string, WorkflowFn> others;

  EngineHarness& harness() { return h_; }

  std::string Start(const std::string& input, const std::string& id = "wf") {
    api::StartWorkflowExecutionRequest request;
    *request.mutable_input() = Text(input);
    return h_.Start(id, request).value();
  }

  // Answers workflow tasks and activities until nothing is left; advances the clock for timers.
  absl::Status Run(
      const std::function<std::string(const std::string&, const std::string&)>& activity,
      bool advance_timers = true) {
    for (int guard = 0; guard < 1000; ++guard) {
      if (auto wt = h_.PollWorkflowTask()) {
        auto& instance = instances_[wt->workflow_execution().run_id()];
        if (!instance || replay_every_task_ ||
            instance->last_started_event_id() != wt->previous_started_event_id()) {
          WorkflowInfo info;
          info.workflow_id = wt->workflow_execution().workflow_id();
          info.run_id = wt->workflow_execution().run_id();
          auto other = others.find(wt->workflow_type().name());
          instance =
              std::make_unique<WorkflowInstance>(other != others.end() ? other->second : fn_, info);
          ++full_replays;
        }
        auto commands = instance->ProcessWorkflowTask(wt->history());
        if (!commands.ok()) return commands.status();
        all_commands.push_back(*commands);
        RETURN_IF_ERROR(h_.Complete(*wt, *commands));
        continue;
      }
      if (auto task = h_.PollActivityTask()) {
        api::RespondActivityTaskCompletedRequest done;
        done.set_task_token(task->task_token());
        *done.mutable_result() = Text(activity(task->activity_type().name(), Data(task->input())));
        RETURN_IF_ERROR(h_.engine().RespondActivityTaskCompleted(done).status());
        continue;
      }
      absl::Time next = absl::InfiniteFuture();
      // The next timer that matters to a workflow (not the retention of closed runs).
      (void)h_.store().Scan(
          orchestrator::Table::kTimers, "", "", 0,
          [&](std::string_view key, std::string_view value) {
            kiln::internal::v1::TimerTask task;
            task.ParseFromArray(value.data(), static_cast<int>(value.size()));
            if (task.type() == kiln::internal::v1::TIMER_TASK_TYPE_DELETE_HISTORY) {
              return true;
            }
            next = orchestrator::keys::TimerFireTime(key);
            return false;
          });
      if (next == absl::InfiniteFuture() || !advance_timers) {
        if (next <= h_.clock().Now()) {  // transfer tasks are due now
          h_.Advance(absl::ZeroDuration());
          continue;
        }
        return absl::OkStatus();
      }
      h_.Advance(next - h_.clock().Now());
    }
    return absl::InternalError("workflow did not settle");
  }

  std::vector<std::vector<api::Command>> all_commands;
  int full_replays = 0;

 private:
  EngineHarness h_;
  WorkflowFn fn_;
  bool replay_every_task_;
  std::map<std::string, std::unique_ptr<WorkflowInstance>> instances_;
};

// Three sequential activities, the second's input built from the first's result.
Task<absl::StatusOr<api::Payloads>> ThreeSteps(WorkflowContext& ctx, api::Payloads input) {
  ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  auto a = co_await ctx.ExecuteActivity("upper", input, options);
  if (!a.ok()) co_return a.status();
  auto b = co_await ctx.ExecuteActivity("exclaim", *a, options);
  if (!b.ok()) co_return b.status();
  auto c = co_await ctx.ExecuteActivity("exclaim", *b, options);
  if (!c.ok()) co_return c.status();
  co_return *c;
}

std::string Activities(const std::string& type, const std::string& input) {
  if (type == "upper") {
    std::string out = input;
    for (char& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return out;
  }
  return input + "!";
}

api::Payloads Result(Driver& d, const std::string& run) {
  api::History history = d.harness().History(run);
  const auto& last = history.events(history.events_size() - 1);
  REQUIRE(last.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  return last.workflow_execution_completed_event_attributes().result();
}

TEST_CASE("A coroutine workflow runs three activities in sequence") {
  Driver d(ThreeSteps);
  std::string run = d.Start("kiln");
  REQUIRE(d.Run(Activities).ok());
  REQUIRE(Data(Result(d, run)) == "KILN!!");
  REQUIRE(d.full_replays == 1);  // cached between tasks: never replayed
}

TEST_CASE("Tasks run ahead on a completion's events give the commands polled tasks give") {
  // The same workflow both ways: polled tasks (Driver), and tasks run ahead of the engine with
  // each activity's completion, on an instance fed the events each completion recorded.
  Driver polled(ThreeSteps);
  polled.Start("kiln");
  REQUIRE(polled.Run(Activities).ok());

  EngineHarness h;
  api::StartWorkflowExecutionRequest start;
  *start.mutable_input() = Text("kiln");
  std::string run = h.Start("wf", start).value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  WorkflowInfo info;
  info.workflow_id = "wf";
  info.run_id = run;
  WorkflowInstance instance(ThreeSteps, info);
  auto commands = instance.ProcessWorkflowTask(wt->history());
  REQUIRE(commands.ok());
  std::vector<std::vector<api::Command>> ahead = {*commands};
  CHECK_FALSE(instance.level());  // what the completion records is not known yet
  api::RespondWorkflowTaskCompletedRequest first;
  first.set_task_token(wt->task_token());
  first.set_return_new_events(true);
  for (const auto& command : *commands) *first.add_commands() = command;
  auto answer = h.engine().RespondWorkflowTaskCompleted(first);
  REQUIRE(answer.ok());
  api::History events;
  *events.mutable_events() = answer->new_events();
  REQUIRE(instance.AbsorbCompletion(events).ok());
  REQUIRE(instance.level());
  // Not an activity the run waits on: refused, the instance untouched.
  CHECK(absl::IsNotFound(instance.RunSpeculativeTask("99", Text("x"), h.clock().Now()).status()));
  CHECK(instance.level());

  while (!instance.completed()) {
    auto activity = h.PollActivityTask();
    REQUIRE(activity.has_value());
    h.clock().Advance(absl::Milliseconds(5));
    api::Payloads result =
        Text(Activities(activity->activity_type().name(), Data(activity->input())));
    const int64_t next_event_id = instance.next_event_id();
    auto next = instance.RunSpeculativeTask(activity->activity_id(), result, h.clock().Now());
    REQUIRE(next.ok());
    ahead.push_back(*next);
    api::RespondActivityTaskCompletedRequest done;
    done.set_task_token(activity->task_token());
    *done.mutable_result() = result;
    auto* speculative = done.mutable_speculative_workflow_task();
    speculative->set_next_event_id(next_event_id);
    ToProto(h.clock().Now(), speculative->mutable_started_time());
    speculative->mutable_completion()->set_return_new_events(true);
    for (const auto& command : *next) *speculative->mutable_completion()->add_commands() = command;
    auto completed = h.engine().RespondActivityTaskCompleted(done);
    REQUIRE(completed.ok());
    REQUIRE(completed->has_workflow_task_completed());
    *events.mutable_events() = completed->workflow_task_completed().new_events();
    REQUIRE(instance.AbsorbCompletion(events).ok());
  }
  REQUIRE(ahead.size() == polled.all_commands.size());
  for (size_t i = 0; i < ahead.size(); ++i) {
    REQUIRE(ahead[i].size() == polled.all_commands[i].size());
    for (size_t j = 0; j < ahead[i].size(); ++j) {
      CHECK(ahead[i][j].SerializeAsString() == polled.all_commands[i][j].SerializeAsString());
    }
  }
  CHECK(Data(h.History(run)
                 .events()
                 .rbegin()
                 ->workflow_execution_completed_event_attributes()
                 .result()) == "KILN!!");
  CHECK(ReplayHistory(ThreeSteps, h.History(run), "wf", run).ok());
}

TEST_CASE("Replaying the whole history at every task gives the same commands and result") {
  Driver cached(ThreeSteps);
  Driver replayed(ThreeSteps, /*replay_every_task=*/true);
  std::string r1 = cached.Start("abc");
  std::string r2 = replayed.Start("abc");
  REQUIRE(cached.Run(Activities).ok());
  REQUIRE(replayed.Run(Activities).ok());
  REQUIRE(replayed.full_replays == 4);
  REQUIRE(Data(Result(cached, r1)) == Data(Result(replayed, r2)));
  REQUIRE(cached.all_commands.size() == replayed.all_commands.size());
  for (size_t i = 0; i < cached.all_commands.size(); ++i) {
    REQUIRE(cached.all_commands[i].size() == replayed.all_commands[i].size());
    for (size_t j = 0; j < cached.all_commands[i].size(); ++j) {
      REQUIRE(cached.all_commands[i][j].SerializeAsString() ==
              replayed.all_commands[i][j].SerializeAsString());
    }
  }
}

Task<absl::StatusOr<api::Payloads>> TimerAndParallel(WorkflowContext& ctx, api::Payloads input) {
  ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  absl::Time before = ctx.Now();
  absl::Status slept = co_await ctx.Sleep(absl::Minutes(5));
  if (!slept.ok()) co_return slept;
  if (ctx.Now() - before < absl::Minutes(5)) co_return absl::InternalError("time did not pass");
  std::vector<Future<absl::StatusOr<api::Payloads>>> futures;
  for (int i = 0; i < 3; ++i) {
    futures.push_back(ctx.ExecuteActivity("upper", Text(absl::StrCat("p", i)), options));
  }
  auto results = co_await WhenAll(std::move(futures));
  std::string joined;
  for (auto& r : results) {
    if (!r.ok()) co_return r.status();
    joined += Data(*r);
  }
  // The first of a timer and an activity: the activity wins.
  auto quick = ctx.ExecuteActivity("exclaim", Text("fast"), options);
  auto slow = ctx.Sleep(absl::Hours(1));
  size_t first = co_await WhenAny(quick, slow);
  co_return Text(absl::StrCat(joined, "/", first));
}

TEST_CASE("Timers, parallel activities and the first of several") {
  Driver d(TimerAndParallel);
  std::string run = d.Start("");
  REQUIRE(d.Run(Activities).ok());
  REQUIRE(Data(Result(d, run)) == "P0P1P2/0");
  // The three activities were scheduled in one workflow task.
  bool three_at_once = false;
  for (const auto& commands : d.all_commands) three_at_once |= commands.size() == 3;
  REQUIRE(three_at_once);
}

Task<absl::StatusOr<api::Payloads>> Randomish(WorkflowContext& ctx, api::Payloads input) {
  static int side_effect_calls = 0;
  std::string uuid = ctx.NewUuid();
  api::Payloads effect = ctx.SideEffect([] { return Text(std::to_string(++side_effect_calls)); });
  ActivityOptions options;
  auto echoed = co_await ctx.ExecuteActivity("echo", Text(uuid), options);
  if (!echoed.ok()) co_return echoed.status();
  if (Data(*echoed) != uuid) co_return absl::InternalError("uuid changed across replays");
  co_return Text(absl::StrCat(Data(effect), ":", uuid.size()));
}

TEST_CASE("Random ids and side effects are the same when replayed") {
  Driver d(Randomish, /*replay_every_task=*/true);
  std::string run = d.Start("");
  REQUIRE(d.Run([](const std::string&, const std::string& in) { return in; }).ok());
  // The side effect ran once; the replay read the recorded value back.
  REQUIRE(Data(Result(d, run)) == "1:36");
  api::History history = d.harness().History(run);
  bool marker = false;
  for (const auto& e : history.events())
    marker |= e.event_type() == api::EVENT_TYPE_MARKER_RECORDED;
  REQUIRE(marker);
}

TEST_CASE("Random numbers follow the run id alone, the same in every process") {
  WorkflowInfo info;
  info.workflow_id = "wf";
  info.run_id = "0190f0e2-7c1a-7000-8000-000000000001";
  // Fixed for this run id (an FNV-1a seed into mt19937_64, both the same everywhere): a seed
  // salted per process (absl::Hash is) would draw other numbers, and ids (ctx.NewUuid), when
  // another worker process replays the run after a restart or a cache miss.
  WorkflowInstance first(ThreeSteps, info);
  CHECK(first.Random() == 16864586531081321074u);
  CHECK(first.Random() == 13306199459659353543u);
  CHECK(first.Random() == 16613856662162219695u);
  WorkflowInstance again(ThreeSteps, info);
  CHECK(again.Random() == 16864586531081321074u);
  info.run_id = "0190f0e2-7c1a-7000-8000-000000000002";
  WorkflowInstance other(ThreeSteps, info);
  CHECK(other.Random() != 16864586531081321074u);
}

Task<absl::StatusOr<api::Payloads>> ChangedCode(WorkflowContext& ctx, api::Payloads input) {
  ActivityOptions options;
  auto a = co_await ctx.ExecuteActivity("lower", input, options);  // was "upper"
  if (!a.ok()) co_return a.status();
  co_return *a;
}

TEST_CASE("Changed code against a recorded history is a non-determinism error naming both") {
  Driver d(ThreeSteps);
  std::string run = d.Start("x");
  REQUIRE(d.Run(Activities).ok());
  api::History history = d.harness().History(run);
  REQUIRE(ReplayHistory(ThreeSteps, history).ok());
  absl::Status status = ReplayHistory(ChangedCode, history);
  REQUIRE(absl::IsFailedPrecondition(status));
  std::string message(status.message());
  INFO(message);
  REQUIRE(message.find("non-determinism") == 0);
  REQUIRE(message.find("5 ActivityTaskScheduled(activity_id=1, type=upper)") != std::string::npos);
  REQUIRE(message.find("ScheduleActivityTask(activity_id=1, type=lower)") != std::string::npos);
}

Task<absl::StatusOr<api::Payloads>> Failing(WorkflowContext& ctx, api::Payloads input) {
  co_return absl::InvalidArgumentError("bad input: " + Data(input));
}

TEST_CASE("A workflow returning an error fails the workflow with its message") {
  Driver d(Failing);
  std::string run = d.Start("zzz");
  REQUIRE(d.Run(Activities).ok());
  api::History history = d.harness().History(run);
  const auto& last = history.events(history.events_size() - 1);
  REQUIRE(last.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED);
  REQUIRE(last.workflow_execution_failed_event_attributes().failure().message() ==
          "bad input: zzz");
}

Task<absl::StatusOr<api::Payloads>> Collector(WorkflowContext& ctx, api::Payloads input) {
  auto& pushes = ctx.GetSignalChannel("push");
  auto received = std::make_shared<std::string>();
  ctx.SetQueryHandler("received",
                      [received](const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                        return Text(*received);
                      });
  for (int i = 0; i < 2; ++i) {
    api::Payloads push = co_await pushes.Receive();
    *received += Data(push);
  }
  co_return Text(*received);
}

absl::Status SendSignal(EngineHarness& h, const std::string& name, const std::string& data) {
  api::SignalWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id("wf");
  request.set_signal_name(name);
  *request.mutable_input() = Text(data);
  return h.engine().SignalWorkflowExecution(request);
}

TEST_CASE("Signals arrive on their channel in order, queries read the state by replay") {
  Driver d(Collector);
  std::string run = d.Start("");
  REQUIRE(d.Run(Activities).ok());
  REQUIRE(SendSignal(d.harness(), "push", "a").ok());
  REQUIRE(d.Run(Activities).ok());
  // A query between signals: replay the history so far and ask the handler.
  {
    WorkflowInfo info;
    info.workflow_id = "wf";
    info.run_id = run;
    WorkflowInstance replica(Collector, info);
    REQUIRE(replica.Replay(d.harness().History(run)).ok());
    REQUIRE(Data(replica.Query("received", {}).value()) == "a");
    REQUIRE(absl::IsNotFound(replica.Query("nope", {}).status()));
  }
  REQUIRE(SendSignal(d.harness(), "push", "b").ok());
  REQUIRE(d.Run(Activities).ok());
  REQUIRE(Data(Result(d, run)) == "ab");
}

Task<absl::StatusOr<api::Payloads>> Cancellable(WorkflowContext& ctx, api::Payloads input) {
  CancellationScope scope;
  auto sleep = ctx.SleepIn(scope, absl::Hours(1));
  auto cancel = ctx.CancellationRequested();
  size_t first = co_await WhenAny(sleep, cancel);
  if (first == 1) {
    ctx.Cancel(scope);
    absl::Status slept = co_await sleep;
    co_return slept;  // kCancelled: the workflow is recorded as canceled
  }
  co_return Text("slept");
}

TEST_CASE("A cancellation request cancels the scope's timer and the workflow closes canceled") {
  Driver d(Cancellable);
  std::string run = d.Start("");
  REQUIRE(d.Run(Activities, /*advance_timers=*/false).ok());
  api::RequestCancelWorkflowExecutionRequest cancel;
  cancel.mutable_workflow_execution()->set_workflow_id("wf");
  REQUIRE(d.harness().engine().RequestCancelWorkflowExecution(cancel).ok());
  REQUIRE(d.Run(Activities, false).ok());
  auto types = d.harness().EventTypes(run);
  REQUIRE(std::count(types.begin(), types.end(), api::EVENT_TYPE_TIMER_CANCELED) == 1);
  REQUIRE(types.back() == api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED);
}

Task<absl::StatusOr<api::Payloads>> Counter(WorkflowContext& ctx, api::Payloads input) {
  int n = std::stoi(Data(input));
  if (n < 3) co_return ctx.ContinueAsNew(Text(std::to_string(n + 1)));
  co_return Text(absl::StrCat("reached ", n));
}

TEST_CASE("Continue-as-new chains runs with fresh histories") {
  Driver d(Counter);
  std::string first = d.Start("1");
  REQUIRE(d.Run(Activities).ok());
  api::DescribeWorkflowExecutionRequest current;
  current.mutable_execution()->set_workflow_id("wf");
  auto described = d.harness().engine().DescribeWorkflowExecution(current).value();
  std::string last = described.workflow_execution_info().execution().run_id();
  REQUIRE(last != first);
  REQUIRE(Data(Result(d, last)) == "reached 3");
  REQUIRE(d.harness().EventTypes(first).back() ==
          api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
}

Task<absl::StatusOr<api::Payloads>> Child(WorkflowContext& ctx, api::Payloads input) {
  ActivityOptions options;
  auto upper = co_await ctx.ExecuteActivity("upper", input, options);
  co_return upper;
}

Task<absl::StatusOr<api::Payloads>> Parent(WorkflowContext& ctx, api::Payloads input) {
  ChildWorkflowOptions options;
  options.workflow_id = "the-child";
  ChildWorkflow child = ctx.ExecuteChildWorkflow("Child", input, options);
  auto started = co_await child.started;
  if (!started.ok()) co_return started.status();
  auto result = co_await child.result;
  if (!result.ok()) co_return result.status();
  co_return Text(absl::StrCat(started->workflow_id(), ":", Data(*result)));
}

TEST_CASE("A child workflow's start and result reach the parent's coroutine") {
  Driver d(Parent, /*replay_every_task=*/true);
  d.others["Child"] = Child;
  std::string run = d.Start("kiln");
  REQUIRE(d.Run(Activities).ok());
  REQUIRE(Data(Result(d, run)) == "the-child:KILN");
}

}  // namespace
}  // namespace kiln::sdk
