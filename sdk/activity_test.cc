// Activity errors as failures, task info, and the context's heartbeat throttle and
// cancellation, on a fake clock with a fake heartbeat recorder.
#include "sdk/activity.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <sstream>
#include <thread>

#include "common/proto_time.h"

namespace kiln::sdk {
namespace {

// Records each heartbeat; answers at once with `answer`, or holds the callback when
// `hold` is set.
class FakeRecorder : public HeartbeatRecorder {
 public:
  void RecordHeartbeat(const std::string& task_token, const api::Payloads& details,
                       std::function<void(absl::StatusOr<bool>)> done) override {
    std::function<void(absl::StatusOr<bool>)> now;
    absl::StatusOr<bool> answer;
    {
      absl::MutexLock lock(&mu);
      tokens.push_back(task_token);
      sent.push_back(details);
      if (hold) {
        held = std::move(done);
        return;
      }
      answer = this->answer;
      now = std::move(done);
    }
    now(answer);
  }
  size_t count() {
    absl::MutexLock lock(&mu);
    return sent.size();
  }
  int LastValue() {
    absl::MutexLock lock(&mu);
    return FromPayloadAt<int>(sent.back(), 0).value();
  }

  absl::Mutex mu;
  std::vector<std::string> tokens;
  std::vector<api::Payloads> sent;
  absl::StatusOr<bool> answer = false;
  bool hold = false;
  std::function<void(absl::StatusOr<bool>)> held;
};

ActivityInfo Info(absl::Time now, absl::Duration heartbeat_timeout) {
  ActivityInfo info;
  info.activity_id = "a1";
  info.activity_type = "build";
  info.workflow_id = "w1";
  info.task_token = "token";
  info.heartbeat_timeout = heartbeat_timeout;
  info.started_time = now;
  return info;
}

TEST_CASE("ApplicationError carries its type and flag into the failure") {
  absl::Status error =
      ApplicationError("BadInput", "no such repo", /*non_retryable=*/true, ToPayloads(7));
  api::Failure failure = FailureFromStatus(error);
  REQUIRE(failure.message() == "no such repo");
  REQUIRE(failure.source() == "kiln-cpp-sdk");
  REQUIRE(failure.application_failure_info().type() == "BadInput");
  REQUIRE(failure.application_failure_info().non_retryable());
  REQUIRE(FromPayloadAt<int>(failure.application_failure_info().details(), 0).value() == 7);
  REQUIRE_FALSE(FailureFromStatus(ApplicationError("Flaky", "again"))
                    .application_failure_info()
                    .non_retryable());

  api::Failure plain = FailureFromStatus(absl::InvalidArgumentError("bad ref"));
  REQUIRE(plain.message() == "bad ref");
  REQUIRE(plain.application_failure_info().type() == "INVALID_ARGUMENT");
  REQUIRE_FALSE(plain.application_failure_info().non_retryable());
  REQUIRE(FailureFromStatus(absl::UnavailableError("x")).application_failure_info().type() ==
          "UNAVAILABLE");

  REQUIRE(IsCanceledError(CanceledError()));
  REQUIRE_FALSE(IsCanceledError(ApplicationError("T", "m")));
  REQUIRE(FailureFromStatus(CanceledError()).application_failure_info().type() == "CANCELLED");
}

TEST_CASE("Task info: ids, attempt and the earlier of the two deadlines") {
  api::PollActivityTaskQueueResponse task;
  task.set_task_token("tok");
  task.mutable_workflow_execution()->set_workflow_id("w");
  task.mutable_workflow_execution()->set_run_id("r");
  task.mutable_activity_type()->set_name("fetch");
  task.set_activity_id("3");
  task.set_attempt(2);
  absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  ToProto(t0, task.mutable_scheduled_time());
  ToProto(t0 + absl::Seconds(5), task.mutable_started_time());
  ToProto(absl::Seconds(60), task.mutable_start_to_close_timeout());
  ToProto(absl::Seconds(30), task.mutable_schedule_to_close_timeout());
  ToProto(absl::Seconds(10), task.mutable_heartbeat_timeout());
  ActivityInfo info = ActivityInfoFromTask(task, "q");
  REQUIRE(info.workflow_id == "w");
  REQUIRE(info.run_id == "r");
  REQUIRE(info.activity_type == "fetch");
  REQUIRE(info.attempt == 2);
  REQUIRE(info.task_queue == "q");
  REQUIRE(info.heartbeat_timeout == absl::Seconds(10));
  REQUIRE(info.deadline == t0 + absl::Seconds(30));  // schedule-to-close comes first
  task.clear_schedule_to_close_timeout();
  REQUIRE(ActivityInfoFromTask(task, "q").deadline == t0 + absl::Seconds(65));
  task.clear_start_to_close_timeout();
  REQUIRE(ActivityInfoFromTask(task, "q").deadline == absl::InfiniteFuture());
}

TEST_CASE("Heartbeats are throttled to one per 80% of the timeout, the latest details win") {
  FakeClock clock;
  FakeRecorder recorder;
  ActivityContext ctx(Info(clock.Now(), absl::Seconds(10)), ToPayloads(std::string("before")),
                      &recorder, {.clock = &clock});
  REQUIRE(FromPayloadAt<std::string>(ctx.previous_heartbeat_details(), 0).value() == "before");

  ctx.Heartbeat(ToPayloads(1));  // The first goes out at once.
  REQUIRE(recorder.count() == 1);
  REQUIRE(recorder.tokens[0] == "token");
  ctx.Heartbeat(ToPayloads(2));
  ctx.Heartbeat(ToPayloads(3));
  ctx.Heartbeat();  // No details: keeps 3.
  REQUIRE(recorder.count() == 1);
  clock.Advance(absl::Milliseconds(7999));
  REQUIRE(recorder.count() == 1);
  clock.Advance(absl::Milliseconds(1));  // 8 s: the held heartbeat goes, with the latest.
  REQUIRE(recorder.count() == 2);
  REQUIRE(recorder.LastValue() == 3);
  REQUIRE(clock.PendingAlarms() == 0);  // Nothing held: no timer.
  clock.Advance(absl::Seconds(60));
  REQUIRE(recorder.count() == 2);  // Nothing new: nothing sent.
  ctx.Heartbeat(ToPayloads(4));    // The interval has long passed: at once.
  REQUIRE(recorder.count() == 3);
  REQUIRE(FromPayloadAt<int>(ctx.last_heartbeat_details(), 0).value() == 4);
  REQUIRE_FALSE(ctx.cancelled());
}

TEST_CASE("Without a heartbeat timeout, heartbeats go out at most once a second") {
  FakeClock clock;
  FakeRecorder recorder;
  ActivityContext ctx(Info(clock.Now(), absl::ZeroDuration()), {}, &recorder, {.clock = &clock});
  ctx.Heartbeat(ToPayloads(1));
  ctx.Heartbeat(ToPayloads(2));
  REQUIRE(recorder.count() == 1);
  clock.Advance(kDefaultHeartbeatInterval);
  REQUIRE(recorder.count() == 2);
  REQUIRE(recorder.LastValue() == 2);
}

TEST_CASE("A heartbeat in flight holds the next, it goes when the interval ends") {
  FakeClock clock;
  FakeRecorder recorder;
  recorder.hold = true;
  ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder, {.clock = &clock});
  ctx.Heartbeat(ToPayloads(1));
  clock.Advance(absl::Seconds(5));  // Slow RPC: the interval passes while it is in flight.
  ctx.Heartbeat(ToPayloads(2));
  REQUIRE(recorder.count() == 1);
  recorder.hold = false;
  recorder.held(false);  // The answer comes: the held one goes at once.
  REQUIRE(recorder.count() == 2);
  REQUIRE(recorder.LastValue() == 2);
}

TEST_CASE("A failed heartbeat's details are sent again at the next interval") {
  FakeClock clock;
  FakeRecorder recorder;
  recorder.answer = absl::UnavailableError("down");
  std::ostringstream log;
  Logger logger(&log, LogFormat::kText, LogLevel::kInfo);
  ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder,
                      {.clock = &clock, .logger = &logger});
  ctx.Heartbeat(ToPayloads(5));
  REQUIRE(recorder.count() == 1);
  REQUIRE(log.str().find("activity.heartbeat_failed activity_id=a1") != std::string::npos);
  recorder.answer = false;
  clock.Advance(absl::Milliseconds(800));
  REQUIRE(recorder.count() == 2);
  REQUIRE(recorder.LastValue() == 5);
  REQUIRE_FALSE(ctx.cancelled());
}

TEST_CASE("Details the engine refuses are not sent again") {
  FakeClock clock;
  FakeRecorder recorder;
  recorder.answer = absl::InvalidArgumentError("heartbeat details exceed 2097152 bytes");
  std::ostringstream log;
  Logger logger(&log, LogFormat::kText, LogLevel::kInfo);
  ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder,
                      {.clock = &clock, .logger = &logger});
  ctx.Heartbeat(ToPayloads(5));
  clock.Advance(absl::Seconds(10));
  REQUIRE(recorder.count() == 1);
  REQUIRE_FALSE(ctx.cancelled());
}

TEST_CASE("Cancellation: requested by the workflow, attempt gone, deadline, worker") {
  FakeClock clock;
  FakeRecorder recorder;
  SECTION("a heartbeat answer says cancel_requested") {
    recorder.answer = true;
    ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder, {.clock = &clock});
    REQUIRE_FALSE(ctx.cancelled());
    ctx.Heartbeat();
    REQUIRE(ctx.cancelled());
    REQUIRE(ctx.cancel_reason() == CancelReason::kRequested);
    REQUIRE(ctx.CancellationRequested().HasBeenNotified());
    REQUIRE(ctx.WaitForCancellation(absl::Hours(1)));
  }
  SECTION("the engine no longer runs the attempt") {
    recorder.answer = absl::FailedPreconditionError("attempt 1 is no longer running");
    ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder, {.clock = &clock});
    ctx.Heartbeat();
    REQUIRE(ctx.cancel_reason() == CancelReason::kNotRunning);
  }
  SECTION("the deadline passes") {
    ActivityInfo info = Info(clock.Now(), absl::ZeroDuration());
    info.deadline = clock.Now() + absl::Seconds(30);
    ActivityContext ctx(info, {}, &recorder, {.clock = &clock});
    clock.Advance(absl::Seconds(29));
    REQUIRE_FALSE(ctx.cancelled());
    clock.Advance(absl::Seconds(1));
    REQUIRE(ctx.cancel_reason() == CancelReason::kDeadline);
  }
  SECTION("the worker cancels; the first reason sticks") {
    ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder, {.clock = &clock});
    std::atomic<bool> woke{false};
    std::thread waiter([&] { woke = ctx.WaitForCancellation(absl::InfiniteDuration()); });
    ctx.Cancel(CancelReason::kWorkerShutdown);
    waiter.join();
    REQUIRE(woke.load());
    ctx.Cancel(CancelReason::kRequested);
    REQUIRE(ctx.cancel_reason() == CancelReason::kWorkerShutdown);
  }
}

TEST_CASE("WaitForCancellation times out on the injected clock") {
  FakeClock clock;
  FakeRecorder recorder;
  ActivityContext ctx(Info(clock.Now(), absl::Seconds(1)), {}, &recorder, {.clock = &clock});
  REQUIRE_FALSE(ctx.WaitForCancellation(absl::ZeroDuration()));
  absl::Notification returned;
  bool result = true;
  std::thread waiter([&] {
    result = ctx.WaitForCancellation(absl::Seconds(5));
    returned.Notify();
  });
  // The waiter's alarm is the only one: advance once it is there.
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (clock.PendingAlarms() == 0 && absl::Now() < give_up) std::this_thread::yield();
  REQUIRE(clock.PendingAlarms() == 1);
  clock.Advance(absl::Seconds(4));
  REQUIRE_FALSE(returned.HasBeenNotified());
  clock.Advance(absl::Seconds(1));
  REQUIRE(returned.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
  REQUIRE_FALSE(result);
}

TEST_CASE("After Close nothing more is sent and no timers are left") {
  FakeClock clock;
  FakeRecorder recorder;
  ActivityInfo info = Info(clock.Now(), absl::Seconds(1));
  info.deadline = clock.Now() + absl::Minutes(1);
  auto ctx = std::make_unique<ActivityContext>(info, api::Payloads(), &recorder,
                                               ActivityContextOptions{.clock = &clock});
  ctx->Heartbeat(ToPayloads(1));
  ctx->Heartbeat(ToPayloads(2));  // Held, with a timer.
  REQUIRE(clock.PendingAlarms() == 2);
  ctx->Close();
  REQUIRE(clock.PendingAlarms() == 0);
  ctx->Heartbeat(ToPayloads(3));
  ctx.reset();
  clock.Advance(absl::Minutes(2));
  REQUIRE(recorder.count() == 1);
}

TEST_CASE("The logger names the activity") {
  std::ostringstream out;
  Logger logger(&out, LogFormat::kText, LogLevel::kDebug);
  FakeRecorder recorder;
  FakeClock clock;
  ActivityInfo info = Info(clock.Now(), absl::ZeroDuration());
  info.attempt = 3;
  ActivityContext ctx(info, {}, &recorder, {.clock = &clock, .logger = &logger});
  ctx.log().Info("fetch.done", LogField("bytes", 12));
  REQUIRE(out.str().find("INFO fetch.done activity_id=a1 activity_type=build workflow_id=w1 "
                         "attempt=3 bytes=12") != std::string::npos);
}

TEST_CASE("TypedActivity decodes arguments and encodes the result") {
  FakeRecorder recorder;
  FakeClock clock;
  ActivityContext ctx(Info(clock.Now(), absl::ZeroDuration()), {}, &recorder, {.clock = &clock});
  ActivityFn greet = TypedActivity<std::string, int>(
      [](ActivityContext&, const std::string& name, int times) -> absl::StatusOr<std::string> {
        std::string out;
        for (int i = 0; i < times; ++i) out += "hi " + name + ";";
        return out;
      });
  auto result = greet(ctx, ToPayloads(std::string("kiln"), 2));
  REQUIRE(result.ok());
  REQUIRE(FromPayloadAt<std::string>(*result, 0).value() == "hi kiln;hi kiln;");

  auto bad = greet(ctx, ToPayloads(1, 2));
  api::Failure failure = FailureFromStatus(bad.status());
  REQUIRE(failure.application_failure_info().type() == "PayloadDecodeError");
  REQUIRE(failure.application_failure_info().non_retryable());
  REQUIRE(failure.message() ==
          "activity 'build': input: argument 0: expected a string, payload "
          "holds a number");

  ActivityFn check = TypedActivity<>([](ActivityContext&) { return absl::OkStatus(); });
  auto empty = check(ctx, {});
  REQUIRE(empty.ok());
  REQUIRE(empty->payloads_size() == 0);
}

}  // namespace
}  // namespace kiln::sdk
