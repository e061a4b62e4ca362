// Eager activity dispatch through the SDK against a real orchestrator: a workflow worker that
// shares its task queue with an activity worker asks for the activities it schedules to be
// started at once and runs them from the completion's answer, without a poll.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/internal/eager.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/fresh_orchestrator.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using api::Payloads;

sdk::ActivityOptions Quick() {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  return options;
}

// Two sequential activities, then two in parallel; the result counts the characters.
sdk::Task<absl::StatusOr<Payloads>> Mixed(sdk::WorkflowContext& ctx, Payloads input) {
  Payloads value = input;
  for (int i = 0; i < 2; ++i) {
    auto next = co_await ctx.ExecuteActivity("Echo", value, Quick());
    if (!next.ok()) co_return next.status();
    value = *next;
  }
  std::vector<sdk::Future<absl::StatusOr<Payloads>>> parallel;
  parallel.push_back(ctx.ExecuteActivity("Echo", value, Quick()));
  parallel.push_back(ctx.ExecuteActivity("Echo", value, Quick()));
  int64_t total = 0;
  for (auto& result : co_await sdk::WhenAll(std::move(parallel))) {
    if (!result.ok()) co_return result.status();
    total += static_cast<int64_t>(sdk::FromPayloadAt<std::string>(*result, 0)->size());
  }
  co_return sdk::ToPayloads(total);
}

absl::StatusOr<Payloads> Echo(sdk::ActivityContext&, const Payloads& in) { return in; }

// Three activities one after the other.
sdk::Task<absl::StatusOr<Payloads>> Sequence(sdk::WorkflowContext& ctx, Payloads input) {
  Payloads value = input;
  for (int i = 0; i < 3; ++i) {
    auto next = co_await ctx.ExecuteActivity("Echo", value, Quick());
    if (!next.ok()) co_return next.status();
    value = *next;
  }
  co_return value;
}

// One activity, then a timer: the timer's task is polled, so the run leaves this process.
sdk::Task<absl::StatusOr<Payloads>> EchoThenSleep(sdk::WorkflowContext& ctx, Payloads input) {
  auto echoed = co_await ctx.ExecuteActivity("Echo", input, Quick());
  if (!echoed.ok()) co_return echoed.status();
  if (absl::Status slept = co_await ctx.Sleep(absl::Milliseconds(50)); !slept.ok()) {
    co_return slept;
  }
  co_return *echoed;
}

// One activity, then the workflow's clock: what Now() said in the task after the activity.
sdk::Task<absl::StatusOr<Payloads>> EchoThenNow(sdk::WorkflowContext& ctx, Payloads input) {
  auto echoed = co_await ctx.ExecuteActivity("Echo", input, Quick());
  if (!echoed.ok()) co_return echoed.status();
  co_return sdk::ToPayloads(absl::ToUnixMicros(ctx.Now()));
}

// One activity, then a signal "go": the echo followed by the signal's text.
sdk::Task<absl::StatusOr<Payloads>> EchoThenSignal(sdk::WorkflowContext& ctx, Payloads input) {
  auto echoed = co_await ctx.ExecuteActivity("Echo", input, Quick());
  if (!echoed.ok()) co_return echoed.status();
  Payloads signal = co_await ctx.GetSignalChannel("go").Receive();
  co_return sdk::ToPayloads(*sdk::FromPayloadAt<std::string>(*echoed, 0) +
                            *sdk::FromPayloadAt<std::string>(signal, 0));
}

// Schedules an activity with no type: a bad command, which fails the workflow task.
sdk::Task<absl::StatusOr<Payloads>> BadFirstTask(sdk::WorkflowContext& ctx, Payloads input) {
  auto result = co_await ctx.ExecuteActivity("", input, Quick());
  co_return result;
}

// Identities recorded on the run's ActivityTaskStarted events, in order.
std::vector<std::string> StartedBy(sdk::Client& client, const sdk::WorkflowHandle& handle) {
  std::vector<std::string> identities;
  api::History history = client.GetHistory(handle).value();
  for (const auto& event : history.events()) {
    if (event.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_STARTED) {
      identities.push_back(event.activity_task_started_event_attributes().identity());
    }
  }
  return identities;
}

// An activity worker and a workflow worker of queue "eager" (the workflow worker asks for
// eager activities), running every workflow above; "Echo" is `echo`.
struct Workers {
  Workers(sdk::Connection& connection, int max_concurrent, int pollers, int workflow_pollers = 2,
          sdk::ActivityFn echo = Echo, bool speculative = true, size_t cache_size = 1000)
      : activities(
            connection, "eager",
            {.identity = "activity-worker", .max_concurrent = max_concurrent, .pollers = pollers}),
        workflows(connection, "eager",
                  {.identity = "workflow-worker",
                   .pollers = workflow_pollers,
                   .cache_size = cache_size,
                   .eager_activities = &activities,
                   .speculative_tasks = speculative}) {
    REQUIRE(activities.Register("Echo", std::move(echo)).ok());
    REQUIRE(activities.Start().ok());
    workflows.Register("Mixed", Mixed);
    workflows.Register("Sequence", Sequence);
    workflows.Register("EchoThenSleep", EchoThenSleep);
    workflows.Register("EchoThenNow", EchoThenNow);
    workflows.Register("EchoThenSignal", EchoThenSignal);
    workflows.Register("BadFirstTask", BadFirstTask);
    workflows.Start();
  }
  ~Workers() {
    workflows.Stop();
    activities.Stop();
  }
  sdk::ActivityWorker activities;
  sdk::WorkflowWorker workflows;
};

// A real orchestrator on a fresh data directory, and a client of it.
using Fresh = testutil::FreshOrchestrator;

// Starts `type` as `id` on "eager" with input "kiln", its first task run by `workers` (eager).
absl::StatusOr<sdk::WorkflowHandle> StartEager(sdk::Client& client, Workers& workers,
                                               const std::string& id, const std::string& type) {
  return client.StartWorkflow({.id = id, .task_queue = "eager", .eager_worker = &workers.workflows},
                              type, sdk::ToPayloads(std::string("kiln")));
}

// Starts `type` eagerly (see StartEager) and waits for its result, which must be "kiln".
sdk::WorkflowHandle RunEager(sdk::Client& client, Workers& workers, const std::string& id,
                             const std::string& type) {
  auto handle = StartEager(client, workers, id, type);
  REQUIRE(handle.ok());
  REQUIRE(client.GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
  return *handle;
}

TEST_CASE("Activities are started eagerly for a worker with free slots") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;

  {  // Free slots: every activity runs from the completion's answer.
    Workers workers(orchestrator.connection(), /*max_concurrent=*/8, /*pollers=*/1);
    auto handle = client.StartWorkflow({.id = "eager-1", .task_queue = "eager"}, "Mixed",
                                       sdk::ToPayloads(std::string("kiln")));
    REQUIRE(handle.ok());
    REQUIRE(client.GetResult<int64_t>(*handle, absl::Seconds(30)).value() == 8);
    // Started by the workflow worker's completion, not by the activity worker's poll.
    CHECK(StartedBy(client, *handle) ==
          std::vector<std::string>(4, std::string("workflow-worker")));
    CHECK(workers.activities.tasks_started() == 4);
  }

  {  // No free slot: the activity is scheduled and polled as usual.
    // The workflow worker's eager partner is not started, so it never has a free slot; another
    // activity worker of the queue polls the activities.
    sdk::ActivityWorker idle(orchestrator.connection(), "eager", {.identity = "idle"});
    REQUIRE(idle.Register("Echo", Echo).ok());
    sdk::ActivityWorker polling(orchestrator.connection(), "eager",
                                {.identity = "activity-worker", .max_concurrent = 4, .pollers = 1});
    REQUIRE(polling.Register("Echo", Echo).ok());
    REQUIRE(polling.Start().ok());
    sdk::WorkflowWorker workflows(orchestrator.connection(), "eager",
                                  {.identity = "workflow-worker", .eager_activities = &idle});
    workflows.Register("Mixed", Mixed);
    workflows.Start();
    auto handle = client.StartWorkflow({.id = "eager-2", .task_queue = "eager"}, "Mixed",
                                       sdk::ToPayloads(std::string("kiln")));
    REQUIRE(handle.ok());
    REQUIRE(client.GetResult<int64_t>(*handle, absl::Seconds(30)).value() == 8);
    CHECK(StartedBy(client, *handle) ==
          std::vector<std::string>(4, std::string("activity-worker")));
    workflows.Stop();
    polling.Stop();
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("Eager start, activities and next tasks carry a workflow with no poll at all") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    // No workflow pollers: every workflow task must come back with a start or a completion.
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/0);
    sdk::WorkflowWorker& workflows = workers.workflows;
    const int64_t result_polls = orchestrator.RpcCount("GetWorkflowExecutionHistory").value();
    auto handle = StartEager(client, workers, "no-poll", "Sequence");
    REQUIRE(handle.ok());
    REQUIRE(handle->local != nullptr);
    REQUIRE(client.GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
    // The close came back with the last task's completion: no long poll for the result.
    CHECK(orchestrator.RpcCount("GetWorkflowExecutionHistory").value() == result_polls);
    // The last task is counted once its answer returns, which may be after the result.
    CHECK(testutil::WaitFor([&] { return workflows.tasks_completed() == 4; }, absl::Seconds(10)));
    // Each activity's completion started the next workflow task in its own transition.
    api::History history = client.GetHistory(*handle).value();
    int carried = 0;
    for (int i = 1; i < history.events_size(); ++i) {
      if (history.events(i).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED &&
          history.events(i - 2).event_type() == api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
        CHECK(history.events(i).task_id() == history.events(i - 2).task_id());
        ++carried;
      }
    }
    CHECK(carried == 3);
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("Many runs through a cache smaller than the runs in flight all complete") {
  // Every way a run goes into the worker's cache, at once: evictions and full replays, eager
  // and plain starts, activities that miss their eager slot and come back through a poll, and
  // next tasks that reach another poller before the previous task's instance is put back (the
  // cache then holds the run once: a second entry once made eviction erase a run it no longer
  // held).
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  constexpr int kCallers = 8;
  constexpr int kRunsEach = 12;
  constexpr size_t kCache = 4;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/3, /*pollers=*/2,
                    /*workflow_pollers=*/3, Echo, /*speculative=*/true, kCache);
    std::atomic<int> completed{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c) {
      callers.emplace_back([&, c] {
        sdk::Client client(orchestrator.connection());
        for (int i = 0; i < kRunsEach; ++i) {
          auto handle =
              client.StartWorkflow({.id = absl::StrCat("tiny-cache-", c, "-", i),
                                    .task_queue = "eager",
                                    .eager_worker = i % 2 == 0 ? &workers.workflows : nullptr},
                                   "Sequence", sdk::ToPayloads(std::string("kiln")));
          if (!handle.ok()) continue;
          auto result = client.GetResult<std::string>(*handle, absl::Seconds(60));
          if (result.ok() && *result == "kiln") ++completed;
        }
      });
    }
    for (auto& caller : callers) caller.join();
    CHECK(completed.load() == kCallers * kRunsEach);
    CHECK(workers.workflows.cached() <= kCache);
    CHECK(workers.workflows.full_replays() > kCallers * kRunsEach);  // evictions replayed
    CHECK(workers.workflows.tasks_failed() == 0);
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("An activity's slot passes to the activity its workflow's next task schedules") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  for (const bool speculative : {true, false}) {
    // Two slots: the activity poller holds one while it waits, so eager dispatch has one. Each
    // activity hands it to the activity of the workflow task its completion carries
    // (speculative), or frees it before the task it brings back runs: either way the next
    // activity takes it, so all three start eagerly and none is polled.
    Workers workers(orchestrator.connection(), /*max_concurrent=*/2, /*pollers=*/1,
                    /*workflow_pollers=*/2, Echo, speculative);
    sdk::WorkflowHandle handle =
        RunEager(client, workers, speculative ? "handover" : "handover-2", "Sequence");
    CHECK(StartedBy(client, handle) == std::vector<std::string>(3, std::string("workflow-worker")));
    if (speculative) {
      CHECK(workers.workflows.speculative_accepted() == 4);  // the start's task, and three
      CHECK(workers.workflows.partial_histories() == 0);
    } else {
      // The second and third workflow tasks came back with only the events after the previous
      // task (the worker held the run).
      CHECK(workers.workflows.speculative_accepted() == 0);
      CHECK(workers.workflows.partial_histories() == 3);
    }
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE(
    "An activity's completion carries the workflow's next task, run ahead on the cached run") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/0);
    const int64_t completions = orchestrator.RpcCount("RespondWorkflowTaskCompleted").value();
    sdk::WorkflowHandle handle = RunEager(client, workers, "speculative", "Sequence");
    // No task was answered on its own: the first went with the start, the other three with
    // their activity's completion.
    CHECK(orchestrator.RpcCount("RespondWorkflowTaskCompleted").value() == completions);
    CHECK(workers.workflows.speculative_accepted() == 4);
    CHECK(workers.workflows.speculative_refused() == 0);
    CHECK(testutil::WaitFor([&] { return workers.workflows.tasks_completed() == 4; },
                            absl::Seconds(10)));
    // The history is the usual one, each such task started and completed in the transition
    // of the activity's completion; and it replays against the code.
    api::History history = client.GetHistory(handle).value();
    int carried = 0;
    for (int i = 2; i + 1 < history.events_size(); ++i) {
      if (history.events(i).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED &&
          history.events(i - 2).event_type() == api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
        REQUIRE(history.events(i + 1).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
        CHECK(history.events(i + 1).task_id() == history.events(i - 2).task_id());
        ++carried;
      }
    }
    CHECK(carried == 3);
    // The first task started and completed in the start's transition.
    REQUIRE(history.events(3).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
    CHECK(history.events(3).task_id() == history.events(0).task_id());
    CHECK(sdk::ReplayHistory(Sequence, history, "speculative", handle.run_id).ok());
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A task run ahead sees the Now() its history records") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/0);
    auto handle = StartEager(client, workers, "now", "EchoThenNow");
    REQUIRE(handle.ok());
    int64_t seen = client.GetResult<int64_t>(*handle, absl::Seconds(30)).value();
    CHECK(workers.workflows.speculative_accepted() == 2);  // the start's task and the next
    // A replay of the history gets the same time: that of the task's started event.
    api::History history = client.GetHistory(*handle).value();
    int64_t recorded = 0;
    for (const auto& event : history.events()) {
      if (event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED) {
        recorded = absl::ToUnixMicros(FromProto(event.event_time()));
      }
    }
    CHECK(seen == recorded);
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

// Sends the run a signal "go" ("!") after its worker ran the next task ahead and before the
// completion carrying it reaches the orchestrator: the engine must refuse that task.
class SignalsWhileSpeculating final : public sdk::EagerWorkflowTaskRunner {
 public:
  SignalsWhileSpeculating(sdk::WorkflowWorker& worker, sdk::Connection& connection)
      : worker_(worker), connection_(connection) {}
  bool AcceptsEagerTask(const std::string& queue) override {
    return worker_.AcceptsEagerTask(queue);
  }
  const std::string& eager_identity() const override { return worker_.eager_identity(); }
  void RunEagerTask(api::PollWorkflowTaskQueueResponse task) override {
    worker_.RunEagerTask(std::move(task));
  }
  bool HoldsRun(const std::string& run_id) override { return worker_.HoldsRun(run_id); }
  std::unique_ptr<sdk::SpeculativeTask> Speculate(const std::string& run_id,
                                                  const std::string& activity_id,
                                                  const Payloads& result, bool slot) override {
    auto task = worker_.Speculate(run_id, activity_id, result, slot);
    api::SignalWorkflowExecutionRequest signal;
    signal.mutable_workflow_execution()->set_workflow_id("refused");
    signal.set_signal_name("go");
    *signal.mutable_input() = sdk::ToPayloads(std::string("!"));
    api::SignalWorkflowExecutionResponse ignored;
    grpc::ClientContext context;
    if (connection_.workflow_service().SignalWorkflowExecution(&context, signal, &ignored).ok()) {
      ++signalled;
    }
    return task;
  }
  void FinishSpeculative(std::unique_ptr<sdk::SpeculativeTask> task, const absl::Status& status,
                         api::RespondActivityTaskCompletedResponse* response) override {
    worker_.FinishSpeculative(std::move(task), status, response);
  }

  std::atomic<int> signalled{0};  // (assertions belong on the test's thread)

 private:
  sdk::WorkflowWorker& worker_;
  sdk::Connection& connection_;
};

TEST_CASE("A task run ahead that the engine refuses is dropped, the run goes on from its history") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/1);
    SignalsWhileSpeculating signals(workers.workflows, orchestrator.connection());
    workers.activities.SetWorkflowTaskRunner(&signals);
    auto handle = StartEager(client, workers, "refused", "EchoThenSignal");
    REQUIRE(handle.ok());
    // The signal's task, polled, saw the activity's result and the signal.
    CHECK(client.GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln!");
    CHECK(signals.signalled.load() == 1);
    CHECK(workers.workflows.speculative_refused() == 1);
    CHECK(workers.workflows.speculative_accepted() == 1);  // the start's
    // The instance that ran ahead was dropped: that task replayed the run from its history.
    CHECK(workers.workflows.full_replays() == 2);
    api::History history = client.GetHistory(*handle).value();
    CHECK(sdk::ReplayHistory(EchoThenSignal, history, "refused", handle->run_id).ok());
    workers.activities.SetWorkflowTaskRunner(nullptr);  // before `signals` goes
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

// Says it holds every run, whatever its worker's cache holds.
class ClaimsToHoldEveryRun final : public sdk::EagerWorkflowTaskRunner {
 public:
  explicit ClaimsToHoldEveryRun(sdk::WorkflowWorker& worker) : worker_(worker) {}
  bool AcceptsEagerTask(const std::string& queue) override {
    return worker_.AcceptsEagerTask(queue);
  }
  const std::string& eager_identity() const override { return worker_.eager_identity(); }
  void RunEagerTask(api::PollWorkflowTaskQueueResponse task) override {
    worker_.RunEagerTask(std::move(task));
  }
  bool HoldsRun(const std::string&) override { return true; }

 private:
  sdk::WorkflowWorker& worker_;
};

TEST_CASE("A partial history the worker cannot place is read in full and replayed") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    sdk::WorkflowWorker* workflows_ptr = nullptr;
    // Drops the worker's cache while the activity runs: the next task, asked for with a
    // partial history, finds no cached run.
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/0,
                    [&](sdk::ActivityContext&, const Payloads& in) -> absl::StatusOr<Payloads> {
                      workflows_ptr->ClearCache();
                      return in;
                    });
    sdk::WorkflowWorker& workflows = workers.workflows;
    workflows_ptr = &workflows;
    ClaimsToHoldEveryRun claims(workflows);
    workers.activities.SetWorkflowTaskRunner(&claims);
    RunEager(client, workers, "lost-cache", "Sequence");
    CHECK(workflows.partial_histories() == 3);
    // Each of them replayed the whole run, read back from the orchestrator.
    CHECK(workflows.full_replays() == 4);
    CHECK(workflows.cache_hits() == 0);
    workers.activities.SetWorkflowTaskRunner(nullptr);  // before `claims` goes
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A start whose first task, run ahead, is refused runs that task the usual way") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/0);
    auto handle = StartEager(client, workers, "bad-first", "BadFirstTask");
    REQUIRE(handle.ok());
    // The engine refused the task with the start (a bad command) and started the run without
    // it; the worker ran the first task from the answer and failed it, with the cause.
    CHECK(workers.workflows.speculative_refused() == 1);
    CHECK(workers.workflows.speculative_accepted() == 0);
    CHECK(workers.workflows.tasks_failed() == 1);
    api::History history = client.GetHistory(*handle).value();
    REQUIRE(history.events_size() >= 4);
    CHECK(history.events(3).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_FAILED);
    REQUIRE(client.Terminate(*handle, "test done").ok());
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A run whose tasks leave the process is waited for at the orchestrator") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/1);
    const int64_t result_polls = orchestrator.RpcCount("GetWorkflowExecutionHistory").value();
    auto handle = StartEager(client, workers, "leaves", "EchoThenSleep");
    REQUIRE(handle.ok());
    REQUIRE(handle->local != nullptr);
    REQUIRE(client.GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
    // The timer's task was polled, not carried: the result came from the orchestrator.
    CHECK(handle->local->settled());
    CHECK_FALSE(handle->local->Wait(absl::Now()).has_value());
    CHECK(orchestrator.RpcCount("GetWorkflowExecutionHistory").value() > result_polls);
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A polled task of a run the worker keeps carries only the new events") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    Workers workers(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                    /*workflow_pollers=*/1);
    RunEager(client, workers, "sticky", "EchoThenSleep");
    // The start and the activity's completion carried the first two tasks (run ahead); the
    // timer's task was polled by the worker that completed the task before it (sticky):
    // partial, a cache hit.
    CHECK(workers.workflows.speculative_accepted() == 2);
    CHECK(workers.workflows.partial_histories() == 1);
    CHECK(workers.workflows.cache_hits() == 1);
    CHECK(workers.workflows.full_replays() == 1);
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A worker sharing another's identity gets whole histories of runs it does not keep") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  {
    // Both workflow workers are "workflow-worker"; the keeper does not poll, so the timer's
    // task can only go to the other one.
    Workers keeper(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                   /*workflow_pollers=*/0);
    Workers other(orchestrator.connection(), /*max_concurrent=*/4, /*pollers=*/1,
                  /*workflow_pollers=*/1);
    RunEager(client, keeper, "shared-identity", "EchoThenSleep");
    // The start and the activity's completion carried the first two tasks (run ahead).
    CHECK(keeper.workflows.speculative_accepted() == 2);
    // The other worker got the whole history with its poll: no partial one to read again.
    CHECK(other.workflows.partial_histories() == 0);
    CHECK(other.workflows.full_replays() == 1);
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("An eager start runs the first workflow task on the starter's worker") {
  Fresh fresh;
  testutil::OrchestratorProcess& orchestrator = fresh.orchestrator;
  sdk::Client& client = *fresh.client;
  auto workers_owner =
      std::make_unique<Workers>(orchestrator.connection(), /*max_concurrent=*/8, /*pollers=*/1);
  Workers& workers = *workers_owner;
  const int64_t before = workers.workflows.tasks_completed();
  auto handle = StartEager(client, workers, "eager-start", "Mixed");
  REQUIRE(handle.ok());
  // The first task ran before StartWorkflow returned.
  CHECK(workers.workflows.tasks_completed() == before + 1);
  REQUIRE(client.GetResult<int64_t>(*handle, absl::Seconds(30)).value() == 8);
  api::History history = client.GetHistory(*handle).value();
  REQUIRE(history.events_size() > 3);
  CHECK(history.events(2).workflow_task_started_event_attributes().identity() == "workflow-worker");
  // Started in the start's own transition.
  CHECK(history.events(0).task_id() == history.events(2).task_id());

  // A worker of another queue is not asked: the start is an ordinary one.
  auto other = client.StartWorkflow(
      {.id = "not-eager", .task_queue = "elsewhere", .eager_worker = &workers.workflows}, "Mixed",
      sdk::ToPayloads(std::string("x")));
  REQUIRE(other.ok());
  CHECK(workers.workflows.tasks_completed() <= before + 8);
  REQUIRE(client.Terminate(*other, "test done").ok());
  workers_owner.reset();  // Before the orchestrator goes, so no poll outlives it.
  REQUIRE(orchestrator.Stop().value() == 0);
}

}  // namespace
}  // namespace kiln
