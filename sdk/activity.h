// What activity code sees: the ActivityContext (attempt, task info, heartbeats, cancellation,
// a logger that names the activity) and the error helpers that decide how a failure is
// reported. An activity is a plain function run by an ActivityWorker:
//
//   absl::StatusOr<api::Payloads> Build(ActivityContext& ctx, const api::Payloads& input) {
//     for (int step = Resume(ctx.previous_heartbeat_details()); step < kSteps; ++step) {
//       if (ctx.cancelled()) return CanceledError();
//       RETURN_IF_ERROR(RunStep(step));
//       ctx.Heartbeat(ToPayloads(step + 1));   // progress, handed to the next attempt
//     }
//     return ToPayloads(std::string("built"));
//   }
//
// Errors: ApplicationError(type, message, non_retryable) reports a failure of that type (a
// non-retryable one fails the activity at once, whatever the retry policy); CanceledError()
// after the workflow asked to cancel reports the activity canceled; any other error status is
// a retryable failure whose type is the status code's name ("UNAVAILABLE"). CanceledError()
// after a cancellation the workflow did not ask for (the worker stopping, the deadline) is a
// retryable failure of type "WorkerShutdown" (or "ActivityDeadlineExceeded"), so the engine
// runs the attempt again rather than closing the activity as canceled.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "kiln/api/v1/failure.pb.h"
#include "kiln/api/v1/workflow_service.pb.h"
#include "sdk/converter.h"

namespace kiln::sdk {

namespace api = ::kiln::api::v1;

// ---- Errors -------------------------------------------------------------------------------

// A failure of the given type. `details` travel in the failure (e.g. to the workflow).
absl::Status ApplicationError(std::string type, std::string message, bool non_retryable = false,
                              const api::Payloads& details = {});
// What an activity returns when it stops because it was cancelled.
absl::Status CanceledError(std::string message = "activity canceled");
bool IsCanceledError(const absl::Status& status);

// The failure an error status is reported as: message, source "kiln-cpp-sdk", and
// application_failure_info with the ApplicationError's type and flag, or the code's name
// (e.g. "INVALID_ARGUMENT") and retryable for any other status.
api::Failure FailureFromStatus(const absl::Status& status);

// ---- The context ---------------------------------------------------------------------------

struct ActivityInfo {
  std::string ns{};
  std::string task_queue{};
  std::string workflow_id{};
  std::string run_id{};
  std::string workflow_type{};
  std::string activity_id{};
  std::string activity_type{};
  int32_t attempt = 1;
  absl::Time scheduled_time = absl::InfinitePast();
  absl::Time current_attempt_scheduled_time = absl::InfinitePast();
  absl::Time started_time = absl::InfinitePast();
  // Zero when not set.
  absl::Duration schedule_to_close_timeout = absl::ZeroDuration();
  absl::Duration start_to_close_timeout = absl::ZeroDuration();
  absl::Duration heartbeat_timeout = absl::ZeroDuration();
  // When this attempt must be done by: the earlier of started + start-to-close and scheduled
  // + schedule-to-close; InfiniteFuture when neither is set.
  absl::Time deadline = absl::InfiniteFuture();
  api::Header header{};
  std::string task_token{};
};

ActivityInfo ActivityInfoFromTask(const api::PollActivityTaskQueueResponse& task,
                                  const std::string& task_queue);

// Why a context was cancelled.
enum class CancelReason {
  kNone,
  // The workflow asked (a heartbeat's answer said cancel_requested).
  kRequested,
  kWorkerShutdown,
  // The attempt's deadline passed: the engine has timed it out.
  kDeadline,
  // The engine no longer runs this attempt (timed out, workflow closed): a heartbeat was
  // refused.
  kNotRunning,
};
std::string_view CancelReasonName(CancelReason reason);

// Sends heartbeats for contexts. Implemented by the worker over gRPC; faked in tests.
class HeartbeatRecorder {
 public:
  virtual ~HeartbeatRecorder() = default;
  // Starts one RecordActivityTaskHeartbeat without blocking; `done` runs exactly once, on any
  // thread (possibly inside this call), with cancel_requested or the call's error. Empty
  // `details` leave the recorded ones as they are.
  virtual void RecordHeartbeat(const std::string& task_token, const api::Payloads& details,
                               std::function<void(absl::StatusOr<bool>)> done) = 0;
};

// Logs through a Logger with the activity's id, type, workflow id and attempt first.
//   ctx.log().Info("fetch.done", LogField("bytes", n));
class ActivityLogger {
 public:
  ActivityLogger(Logger* logger, const ActivityInfo* info) : logger_(logger), info_(info) {}

  template <class... Fields>
  void Log(LogLevel level, std::string_view event, const Fields&... fields) {
    if (!logger_->Enabled(level)) return;
    logger_->Log(level, event,
                 {LogField("activity_id", info_->activity_id),
                  LogField("activity_type", info_->activity_type),
                  LogField("workflow_id", info_->workflow_id), LogField("attempt", info_->attempt),
                  LogField(fields)...});
  }
  template <class... Fields>
  void Debug(std::string_view event, const Fields&... fields) {
    Log(LogLevel::kDebug, event, fields...);
  }
  template <class... Fields>
  void Info(std::string_view event, const Fields&... fields) {
    Log(LogLevel::kInfo, event, fields...);
  }
  template <class... Fields>
  void Warn(std::string_view event, const Fields&... fields) {
    Log(LogLevel::kWarn, event, fields...);
  }
  template <class... Fields>
  void Error(std::string_view event, const Fields&... fields) {
    Log(LogLevel::kError, event, fields...);
  }

 private:
  Logger* logger_;
  const ActivityInfo* info_;
};

struct ActivityContextOptions {
  // Defaults: the real clock, the process logger, the default converter.
  Clock* clock = nullptr;
  Logger* logger = nullptr;
  const PayloadConverter* converter = nullptr;
  // Heartbeats go out at most once per this interval; zero: 80 % of the heartbeat timeout, or
  // kDefaultHeartbeatInterval without one (a heartbeat is how cancellation is heard).
  absl::Duration heartbeat_interval = absl::ZeroDuration();
};

inline constexpr absl::Duration kDefaultHeartbeatInterval = absl::Seconds(1);

class ActivityContext {
 public:
  // `recorder` must outlive Close() (the destructor closes).
  ActivityContext(ActivityInfo info, api::Payloads previous_heartbeat_details,
                  HeartbeatRecorder* recorder, ActivityContextOptions options = {});
  ~ActivityContext();
  ActivityContext(const ActivityContext&) = delete;
  ActivityContext& operator=(const ActivityContext&) = delete;

  const ActivityInfo& info() const { return info_; }
  int32_t attempt() const { return info_.attempt; }
  // The last heartbeat details recorded by an earlier attempt (empty on a first attempt).
  const api::Payloads& previous_heartbeat_details() const { return previous_details_; }
  const PayloadConverter& converter() const { return *converter_; }
  ActivityLogger& log() { return logger_; }

  // Reports progress and liveness; never blocks. Calls are throttled to one RPC per
  // heartbeat interval: the first goes out at once, later ones within the interval are held
  // and the latest details go out when it ends. Empty details keep the last ones given.
  void Heartbeat(const api::Payloads& details = {});

  bool cancelled() const { return cancelled_->HasBeenNotified(); }
  CancelReason cancel_reason() const;
  // True once cancelled; false when `timeout` (on the injected clock) passed first.
  bool WaitForCancellation(absl::Duration timeout);
  // Notified once when the context is cancelled.
  const absl::Notification& CancellationRequested() const { return *cancelled_; }

  // ---- For the worker ----
  // Cancels (the first reason sticks).
  void Cancel(CancelReason reason);
  // The latest non-empty details given to Heartbeat, sent or not (the worker reports them
  // with a failure so the next attempt gets them).
  api::Payloads last_heartbeat_details() const;
  // Stops the deadline timer and any held heartbeat; later Heartbeat calls do nothing.
  void Close();

 private:
  struct State;

  ActivityInfo info_;
  api::Payloads previous_details_;
  const PayloadConverter* converter_;
  ActivityLogger logger_;
  std::shared_ptr<absl::Notification> cancelled_;
  // Shared with clock alarms and RPC callbacks, which may outlive the call that made them.
  std::shared_ptr<State> state_;
};

using ActivityFn =
    std::function<absl::StatusOr<api::Payloads>(ActivityContext&, const api::Payloads& input)>;

// Wraps a function of typed arguments as an ActivityFn: the input is decoded into Args (a
// decoding error is a non-retryable "PayloadDecodeError"), and the result, a StatusOr<R>,
// is encoded (an absl::Status return means no result).
//   worker.Register("greet", TypedActivity<std::string>(
//       [](ActivityContext& ctx, const std::string& name) -> absl::StatusOr<std::string> {
//         return "hello " + name;
//       }));
template <class... Args, class F>
ActivityFn TypedActivity(F fn) {
  return [fn = std::move(fn)](ActivityContext& ctx,
                              const api::Payloads& input) -> absl::StatusOr<api::Payloads> {
    auto args = FromPayloads<Args...>(input, ctx.converter());
    if (!args.ok()) {
      return ApplicationError("PayloadDecodeError",
                              absl::StrCat("activity '", ctx.info().activity_type,
                                           "': input: ", args.status().message()),
                              /*non_retryable=*/true);
    }
    auto call = [&](auto&... a) { return fn(ctx, a...); };
    using Result = decltype(std::apply(call, *args));
    if constexpr (std::is_same_v<Result, absl::Status>) {
      absl::Status status = std::apply(call, *args);
      if (!status.ok()) return status;
      return api::Payloads();
    } else {
      Result result = std::apply(call, *args);
      if (!result.ok()) return result.status();
      return ToPayloadsWith(ctx.converter(), *result);
    }
  };
}

}  // namespace kiln::sdk
