// The SDK's client and activity worker against a real orchestrator over gRPC. Workflow tasks
// are answered by a small raw-API decider in this file (one activity per workflow, its
// options per workflow type), so what is under test is the activity runtime: results,
// application errors, retries, heartbeat details across attempts, cancellation by the
// workflow and by Stop, idle detection, and the client's result, history and terminate calls.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/proto_time.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using sdk::ActivityContext;
using sdk::ActivityWorker;
using sdk::ActivityWorkerOptions;
using sdk::Client;
using sdk::FromPayloadAt;
using sdk::ToPayloads;
using sdk::WorkflowHandle;

constexpr absl::Duration kWait = absl::Seconds(30);

// How the decider runs the one activity of a workflow type (the type names the activity).
struct ActivitySpec {
  absl::Duration start_to_close = absl::Seconds(30);
  absl::Duration heartbeat_timeout = absl::ZeroDuration();
  // Asks to cancel the activity this long after scheduling it (zero: never).
  absl::Duration cancel_after = absl::ZeroDuration();
};

// Answers workflow tasks from the whole history: schedule the activity, then close the
// workflow the way the activity closed (completed: its result; failed or timed out: a
// failure caused by the activity's; canceled: the result "activity canceled").
class Decider {
 public:
  Decider(sdk::Connection& connection, std::string queue, std::map<std::string, ActivitySpec> specs)
      : connection_(connection), queue_(std::move(queue)), specs_(std::move(specs)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Decider() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (poll_ != nullptr) poll_->TryCancel();
    }
    thread_.join();
  }

 private:
  void Loop() {
    for (;;) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(70));
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        poll_ = &context;
      }
      api::PollWorkflowTaskQueueRequest poll;
      poll.mutable_task_queue()->set_name(queue_);
      poll.set_identity("decider");
      api::PollWorkflowTaskQueueResponse task;
      grpc::Status status =
          connection_.workflow_service().PollWorkflowTaskQueue(&context, poll, &task);
      {
        absl::MutexLock lock(&mu_);
        poll_ = nullptr;
        if (stopping_) return;
      }
      if (!status.ok() || task.task_token().empty()) continue;
      api::RespondWorkflowTaskCompletedRequest done;
      done.set_task_token(task.task_token());
      done.set_identity("decider");
      for (auto& command : Decide(task.workflow_type().name(), task.history())) {
        *done.add_commands() = std::move(command);
      }
      grpc::ClientContext respond;
      respond.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      api::RespondWorkflowTaskCompletedResponse ignored;
      (void)connection_.workflow_service().RespondWorkflowTaskCompleted(&respond, done, &ignored);
    }
  }

  std::vector<api::Command> Decide(const std::string& type, const api::History& history) {
    ActivitySpec spec = specs_.contains(type) ? specs_.at(type) : ActivitySpec{};
    api::Payloads input;
    int64_t scheduled = 0;
    bool cancel_requested = false, timer_fired = false;
    for (const auto& e : history.events()) {
      switch (e.event_type()) {
        case api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
          input = e.workflow_execution_started_event_attributes().input();
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
          scheduled = e.event_id();
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
          return {Complete(e.activity_task_completed_event_attributes().result())};
        case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
          return {Fail(e.activity_task_failed_event_attributes().failure())};
        case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
          return {Fail(e.activity_task_timed_out_event_attributes().failure())};
        case api::EVENT_TYPE_ACTIVITY_TASK_CANCELED:
          return {Complete(ToPayloads(std::string("activity canceled")))};
        case api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
          cancel_requested = true;
          break;
        case api::EVENT_TYPE_TIMER_FIRED:
          timer_fired = true;
          break;
        default:
          break;
      }
    }
    std::vector<api::Command> commands;
    if (scheduled == 0) {
      api::Command& schedule = commands.emplace_back();
      schedule.set_command_type(api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK);
      auto* a = schedule.mutable_schedule_activity_task_command_attributes();
      a->set_activity_id("1");
      a->mutable_activity_type()->set_name(type);
      *a->mutable_input() = input;
      ToProto(spec.start_to_close, a->mutable_start_to_close_timeout());
      if (spec.heartbeat_timeout > absl::ZeroDuration()) {
        ToProto(spec.heartbeat_timeout, a->mutable_heartbeat_timeout());
      }
      ToProto(absl::Milliseconds(100), a->mutable_retry_policy()->mutable_initial_interval());
      if (spec.cancel_after > absl::ZeroDuration()) {
        api::Command& timer = commands.emplace_back();
        timer.set_command_type(api::COMMAND_TYPE_START_TIMER);
        timer.mutable_start_timer_command_attributes()->set_timer_id("cancel");
        ToProto(spec.cancel_after,
                timer.mutable_start_timer_command_attributes()->mutable_start_to_fire_timeout());
      }
    } else if (timer_fired && !cancel_requested) {
      api::Command& cancel = commands.emplace_back();
      cancel.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK);
      cancel.mutable_request_cancel_activity_task_command_attributes()->set_scheduled_event_id(
          scheduled);
    }
    return commands;
  }

  static api::Command Complete(const api::Payloads& result) {
    api::Command command;
    command.set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
    *command.mutable_complete_workflow_execution_command_attributes()->mutable_result() = result;
    return command;
  }

  static api::Command Fail(const api::Failure& cause) {
    api::Command command;
    command.set_command_type(api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION);
    api::Failure* failure =
        command.mutable_fail_workflow_execution_command_attributes()->mutable_failure();
    failure->set_message("activity failed");
    *failure->mutable_cause() = cause;
    return command;
  }

  sdk::Connection& connection_;
  const std::string queue_;
  const std::map<std::string, ActivitySpec> specs_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* poll_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

// One orchestrator, a decider on queue "q" and a client, per test case.
struct Env {
  explicit Env(std::map<std::string, ActivitySpec> specs = {})
      : orchestrator(dir.path() + "/data") {
    REQUIRE(orchestrator.Start().ok());
    decider = std::make_unique<Decider>(orchestrator.connection(), "q", std::move(specs));
    client = std::make_unique<Client>(orchestrator.connection());
  }

  WorkflowHandle Start(const std::string& id, const std::string& type,
                       const api::Payloads& input = {}) {
    auto handle = client->StartWorkflow({.id = id, .task_queue = "q"}, type, input);
    INFO(handle.status().ToString());
    REQUIRE(handle.ok());
    return *handle;
  }

  // The ActivityTaskStarted event of the run's one activity.
  api::ActivityTaskStartedEventAttributes Started(const WorkflowHandle& handle) {
    auto history = client->GetHistory(handle);
    REQUIRE(history.ok());
    for (const auto& e : history->events()) {
      if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_STARTED) {
        return e.activity_task_started_event_attributes();
      }
    }
    FAIL("no ActivityTaskStarted event");
    return {};
  }

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator;
  std::unique_ptr<Decider> decider;
  std::unique_ptr<Client> client;
};

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

TEST_CASE("Activities complete, fail for good, and retry through the SDK") {
  Env env;
  prometheus::Registry registry;
  ActivityWorker worker(env.orchestrator.connection(), "q", {.registry = &registry});
  std::atomic<int> rejects{0};
  REQUIRE(worker
              .Register("greet", sdk::TypedActivity<std::string>(
                                     [](ActivityContext& ctx,
                                        const std::string& name) -> absl::StatusOr<std::string> {
                                       return absl::StrCat("hello ", name, " from attempt ",
                                                           ctx.attempt());
                                     }))
              .ok());
  REQUIRE(
      worker
          .Register("reject",
                    [&](ActivityContext&, const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                      ++rejects;
                      return sdk::ApplicationError("BadRepo", "no such repo: x",
                                                   /*non_retryable=*/true);
                    })
          .ok());
  REQUIRE(worker
              .Register(
                  "flaky",
                  [](ActivityContext& ctx, const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                    if (ctx.attempt() < 3) return absl::UnavailableError("registry down");
                    return ToPayloads(absl::StrCat("attempt ", ctx.attempt()));
                  })
              .ok());
  REQUIRE(worker.Register("greet", nullptr).code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(worker.Start().ok());
  REQUIRE(worker.Start().code() == absl::StatusCode::kFailedPrecondition);

  WorkflowHandle greet = env.Start("greet-1", "greet", ToPayloads(std::string("kiln")));
  WorkflowHandle reject = env.Start("reject-1", "reject");
  WorkflowHandle flaky = env.Start("flaky-1", "flaky");
  WorkflowHandle missing = env.Start("missing-1", "missing");

  auto greeting = env.client->GetResult<std::string>(greet, kWait);
  INFO(greeting.status().ToString());
  REQUIRE(greeting.value() == "hello kiln from attempt 1");

  auto rejected = env.client->GetResult(reject, kWait);
  REQUIRE(rejected.status().code() == absl::StatusCode::kAborted);
  REQUIRE(sdk::ClosedStatusOf(rejected.status()) == api::WORKFLOW_EXECUTION_STATUS_FAILED);
  REQUIRE(std::string(rejected.status().message()) ==
          absl::StrCat("workflow 'reject-1' (run ", reject.run_id,
                       ") failed: activity failed; cause: no such repo: x [type BadRepo]"));
  REQUIRE(rejects.load() == 1);  // Non-retryable, although the policy allows retries.
  auto failure = sdk::WorkflowFailureOf(rejected.status());
  REQUIRE(failure.has_value());
  REQUIRE(failure->cause().application_failure_info().non_retryable());

  REQUIRE(env.client->GetResult<std::string>(flaky, kWait).value() == "attempt 3");
  api::ActivityTaskStartedEventAttributes started = env.Started(flaky);
  REQUIRE(started.attempt() == 3);
  REQUIRE(started.last_failure().message() == "registry down");
  REQUIRE(started.last_failure().application_failure_info().type() == "UNAVAILABLE");

  auto not_registered = env.client->GetResult(missing, kWait);
  REQUIRE(Contains(not_registered.status(), "activity type 'missing' is not registered on worker"));
  REQUIRE(Contains(not_registered.status(), "[type ActivityNotRegistered]"));

  // A start retried with its request id gets the run it created.
  auto again = env.client->StartWorkflow({.id = "greet-2", .task_queue = "q", .request_id = "r2"},
                                         "greet", ToPayloads(std::string("again")));
  auto repeat = env.client->StartWorkflow({.id = "greet-2", .task_queue = "q", .request_id = "r2"},
                                          "greet", ToPayloads(std::string("again")));
  REQUIRE(again.ok());
  REQUIRE(repeat.ok());
  REQUIRE(repeat->run_id == again->run_id);
  REQUIRE(env.client->GetResult<std::string>(*again, kWait).ok());
  auto described = env.client->Describe(greet);
  REQUIRE(described.ok());
  REQUIRE(described->workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_COMPLETED);

  std::string metrics = prometheus::TextSerializer().Serialize(registry.Collect());
  INFO(metrics);
  REQUIRE(
      metrics.find("kiln_sdk_activity_results_total{result=\"completed\",task_queue=\"q\"} 3") !=
      std::string::npos);
  REQUIRE(metrics.find("kiln_sdk_activity_results_total{result=\"failed\",task_queue=\"q\"} 3") !=
          std::string::npos);
  REQUIRE(metrics.find(
              "kiln_sdk_activity_results_total{result=\"not_registered\",task_queue=\"q\"} 1") !=
          std::string::npos);
  REQUIRE(metrics.find("kiln_sdk_activity_task_latency_seconds_count{activity_type=\"flaky\","
                       "task_queue=\"q\"} 3") != std::string::npos);
  REQUIRE(metrics.find("kiln_sdk_activity_schedule_to_start_seconds_count{task_queue=\"q\"} 7") !=
          std::string::npos);
  REQUIRE(metrics.find("kiln_sdk_activity_slots_used{task_queue=\"q\"} 0") != std::string::npos);
  worker.Stop();
}

TEST_CASE("Heartbeat details reach the next attempt after a heartbeat timeout") {
  Env env({{"resume", {.heartbeat_timeout = absl::Seconds(1)}}});
  ActivityWorker worker(env.orchestrator.connection(), "q");
  absl::Notification second_attempt;
  REQUIRE(worker
              .Register(
                  "resume",
                  [&](ActivityContext& ctx, const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                    if (ctx.attempt() == 1) {
                      ctx.Heartbeat(ToPayloads(42));
                      // Goes silent: the engine times the attempt out and starts the
                      // next, which lets this one return (to a stale task).
                      second_attempt.WaitForNotificationWithTimeout(kWait);
                      return ToPayloads(std::string("too late"));
                    }
                    auto progress = FromPayloadAt<int>(ctx.previous_heartbeat_details(), 0);
                    second_attempt.Notify();
                    if (!progress.ok()) return progress.status();
                    return ToPayloads(
                        absl::StrCat("resumed from ", *progress, " at attempt ", ctx.attempt()));
                  })
              .ok());
  REQUIRE(worker.Start().ok());
  WorkflowHandle handle = env.Start("resume-1", "resume");
  auto result = env.client->GetResult<std::string>(handle, kWait);
  INFO(result.status().ToString());
  REQUIRE(result.value() == "resumed from 42 at attempt 2");
  api::ActivityTaskStartedEventAttributes started = env.Started(handle);
  REQUIRE(started.last_failure().timeout_failure_info().timeout_type() ==
          api::TIMEOUT_TYPE_HEARTBEAT);
  worker.Stop();
  REQUIRE(worker.running() == 0);
}

TEST_CASE("A cancel request from the workflow reaches the activity through its heartbeat") {
  Env env({{"cancellable",
            {.heartbeat_timeout = absl::Seconds(1), .cancel_after = absl::Milliseconds(300)}}});
  ActivityWorker worker(env.orchestrator.connection(), "q");
  std::atomic<sdk::CancelReason> reason{sdk::CancelReason::kNone};
  REQUIRE(worker
              .Register(
                  "cancellable",
                  [&](ActivityContext& ctx, const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                    absl::Time give_up = absl::Now() + kWait;
                    while (absl::Now() < give_up) {
                      ctx.Heartbeat();
                      if (ctx.WaitForCancellation(absl::Milliseconds(50))) {
                        reason = ctx.cancel_reason();
                        return sdk::CanceledError();
                      }
                    }
                    return ToPayloads(std::string("never cancelled"));
                  })
              .ok());
  REQUIRE(worker.Start().ok());
  WorkflowHandle handle = env.Start("cancel-1", "cancellable");
  REQUIRE(env.client->GetResult<std::string>(handle, kWait).value() == "activity canceled");
  REQUIRE(reason.load() == sdk::CancelReason::kRequested);
  worker.Stop();
}

TEST_CASE("Stop cancels running activities promptly, another worker retries them") {
  Env env;
  absl::Notification started;
  std::atomic<bool> saw_cancel{false};
  std::atomic<sdk::CancelReason> reason{sdk::CancelReason::kNone};
  auto block = [&](ActivityContext& ctx, const api::Payloads&) -> absl::StatusOr<api::Payloads> {
    if (ctx.attempt() > 1) return ToPayloads(absl::StrCat("done at attempt ", ctx.attempt()));
    started.Notify();
    if (!ctx.WaitForCancellation(kWait)) return ToPayloads(std::string("not cancelled"));
    saw_cancel = ctx.cancelled();
    reason = ctx.cancel_reason();
    return sdk::CanceledError();
  };
  auto first = std::make_unique<ActivityWorker>(env.orchestrator.connection(), "q",
                                                ActivityWorkerOptions{.identity = "first"});
  REQUIRE(first->Register("block", block).ok());
  REQUIRE(first->Start().ok());
  WorkflowHandle handle = env.Start("block-1", "block");
  REQUIRE(started.WaitForNotificationWithTimeout(kWait));

  absl::Time before = absl::Now();
  first->Stop();  // Its other poller sits in a 70 s long poll: Stop must cancel it.
  REQUIRE(absl::Now() - before < absl::Seconds(5));
  REQUIRE(saw_cancel.load());
  REQUIRE(reason.load() == sdk::CancelReason::kWorkerShutdown);
  REQUIRE(first->running() == 0);
  first.reset();

  ActivityWorker second(env.orchestrator.connection(), "q", {.identity = "second"});
  REQUIRE(second.Register("block", block).ok());
  REQUIRE(second.Start().ok());
  REQUIRE(env.client->GetResult<std::string>(handle, kWait).value() == "done at attempt 2");
  api::ActivityTaskStartedEventAttributes attempt = env.Started(handle);
  REQUIRE(attempt.identity() == "second");
  REQUIRE(attempt.last_failure().application_failure_info().type() == "WorkerShutdown");
  second.Stop();
}

TEST_CASE("The worker says when its queue has drained") {
  Env env;
  // Short polls: an empty answer comes after 1 s, which is what confirms the queue is empty
  // (idleness is defined by polls: a worker on the stream never hears "nothing").
  ActivityWorker worker(env.orchestrator.connection(), "q",
                        {.delivery = sdk::TaskDelivery::kPolls, .poll_timeout = absl::Seconds(2)});
  std::atomic<int64_t> idle_while_running{-1};
  REQUIRE(worker
              .Register("echo",
                        [&](ActivityContext&,
                            const api::Payloads& input) -> absl::StatusOr<api::Payloads> {
                          idle_while_running = worker.idle_for_ms();
                          return input;
                        })
              .ok());
  REQUIRE(worker.idle_for_ms() == 0);
  REQUIRE(worker.Start().ok());
  REQUIRE(worker.WaitForIdle(absl::Milliseconds(200), kWait));

  WorkflowHandle handle = env.Start("echo-1", "echo", ToPayloads(std::string("x")));
  REQUIRE(env.client->GetResult<std::string>(handle, kWait).value() == "x");
  REQUIRE(idle_while_running.load() == 0);
  REQUIRE(worker.WaitForIdle(absl::Milliseconds(300), kWait));
  REQUIRE(worker.idle_for_ms() >= 300);
  REQUIRE(worker.tasks_started() == 1);
  // Stop wakes a waiter.
  std::atomic<bool> woke_idle{true};
  std::thread waiter([&] { woke_idle = worker.WaitForIdle(absl::Hours(1), kWait); });
  worker.Stop();
  waiter.join();
  REQUIRE_FALSE(woke_idle.load());
}

TEST_CASE("An exclusive worker holds its queue, another is refused for good, naming it") {
  Env env;
  auto echo = [](ActivityContext&, const api::Payloads& input) -> absl::StatusOr<api::Payloads> {
    return input;
  };
  ActivityWorker holder(
      env.orchestrator.connection(), "q",
      {.identity = "agent-1", .exclusive = true, .poll_timeout = absl::Seconds(2)});
  REQUIRE(holder.Register("echo", echo).ok());
  REQUIRE(holder.Start().ok());
  // An empty poll has come back: the lease is agent-1's. (Any positive idle time: IdleFor is
  // zero until an empty poll confirms the worker idle, so waiting for zero returns at once, and
  // the other worker's first poll could then take the queue first.)
  REQUIRE(holder.WaitForIdle(absl::Milliseconds(1), kWait));

  ActivityWorker other(
      env.orchestrator.connection(), "q",
      {.identity = "agent-2", .exclusive = true, .poll_timeout = absl::Seconds(2)});
  REQUIRE(other.Register("echo", echo).ok());
  REQUIRE(other.Start().ok());
  absl::Time began = absl::Now();
  // Returns early, not after the timeout: polling has failed for good.
  REQUIRE_FALSE(other.WaitForIdle(absl::Hours(1), kWait));
  REQUIRE(absl::Now() - began < absl::Seconds(10));
  absl::Status fatal = other.fatal_error();
  INFO(fatal.ToString());
  REQUIRE(fatal.code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE(Contains(fatal, "agent-1"));
  other.Stop();

  // The holder goes on serving the queue.
  REQUIRE(holder.fatal_error().ok());
  WorkflowHandle handle = env.Start("echo-exclusive", "echo", ToPayloads(std::string("x")));
  REQUIRE(env.client->GetResult<std::string>(handle, kWait).value() == "x");
  REQUIRE(holder.tasks_started() == 1);
  REQUIRE(other.tasks_started() == 0);
}

TEST_CASE("GetResult, Describe and GetHistory of a terminated workflow") {
  Env env;
  auto handle = env.client->StartWorkflow({.id = "term-1", .task_queue = "nobody"}, "idle", {});
  REQUIRE(handle.ok());

  auto running = env.client->GetResult(*handle, absl::Milliseconds(1500));
  REQUIRE(running.status().code() == absl::StatusCode::kDeadlineExceeded);
  REQUIRE(sdk::ClosedStatusOf(running.status()) == api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED);

  REQUIRE(env.client->Terminate(*handle, "test is done").ok());
  auto result = env.client->GetResult(*handle, kWait);
  REQUIRE(result.status().code() == absl::StatusCode::kAborted);
  REQUIRE(sdk::ClosedStatusOf(result.status()) == api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  REQUIRE(std::string(result.status().message()) == absl::StrCat("workflow 'term-1' (run ",
                                                                 handle->run_id,
                                                                 ") was terminated: test is done"));
  // The current run, by workflow id alone.
  auto by_id = env.client->GetResult({"term-1", ""}, kWait);
  REQUIRE(sdk::ClosedStatusOf(by_id.status()) == api::WORKFLOW_EXECUTION_STATUS_TERMINATED);

  auto described = env.client->Describe(*handle);
  REQUIRE(described.ok());
  REQUIRE(described->workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  auto history = env.client->GetHistory(*handle);
  REQUIRE(history.ok());
  REQUIRE(history->events(0).event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
  REQUIRE(history->events(history->events_size() - 1).event_type() ==
          api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);

  REQUIRE(env.client->Terminate(*handle, "again").code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE(env.client->GetHistory({"no-such-workflow", ""}).status().code() ==
          absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kiln
