#include "sdk/activity.h"

#include <algorithm>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/proto_time.h"

namespace kiln::sdk {
namespace {

constexpr char kApplicationErrorUrl[] = "type.googleapis.com/kiln.api.v1.ApplicationFailureInfo";
constexpr char kFailureSource[] = "kiln-cpp-sdk";

}  // namespace

// ---- Errors -------------------------------------------------------------------------------

absl::Status ApplicationError(std::string type, std::string message, bool non_retryable,
                              const api::Payloads& details) {
  api::ApplicationFailureInfo info;
  info.set_type(std::move(type));
  info.set_non_retryable(non_retryable);
  *info.mutable_details() = details;
  // kUnknown: the code says nothing here; the type in the payload is what counts.
  absl::Status status(absl::StatusCode::kUnknown, message);
  status.SetPayload(kApplicationErrorUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status CanceledError(std::string message) { return absl::CancelledError(message); }

bool IsCanceledError(const absl::Status& status) { return absl::IsCancelled(status); }

api::Failure FailureFromStatus(const absl::Status& status) {
  api::Failure failure;
  failure.set_message(std::string(status.message()));
  failure.set_source(kFailureSource);
  auto* info = failure.mutable_application_failure_info();
  auto payload = status.GetPayload(kApplicationErrorUrl);
  if (!payload.has_value() || !info->ParseFromString(std::string(*payload))) {
    info->Clear();
    info->set_type(absl::StatusCodeToString(status.code()));
  }
  return failure;
}

// ---- Info ----------------------------------------------------------------------------------

ActivityInfo ActivityInfoFromTask(const api::PollActivityTaskQueueResponse& task,
                                  const std::string& task_queue) {
  ActivityInfo info;
  info.ns = task.workflow_namespace();
  info.task_queue = task_queue;
  info.workflow_id = task.workflow_execution().workflow_id();
  info.run_id = task.workflow_execution().run_id();
  info.workflow_type = task.workflow_type().name();
  info.activity_id = task.activity_id();
  info.activity_type = task.activity_type().name();
  info.attempt = task.attempt();
  if (IsSet(task.scheduled_time())) info.scheduled_time = FromProto(task.scheduled_time());
  if (IsSet(task.current_attempt_scheduled_time())) {
    info.current_attempt_scheduled_time = FromProto(task.current_attempt_scheduled_time());
  }
  if (IsSet(task.started_time())) info.started_time = FromProto(task.started_time());
  info.schedule_to_close_timeout = FromProto(task.schedule_to_close_timeout());
  info.start_to_close_timeout = FromProto(task.start_to_close_timeout());
  info.heartbeat_timeout = FromProto(task.heartbeat_timeout());
  if (info.start_to_close_timeout > absl::ZeroDuration() &&
      info.started_time != absl::InfinitePast()) {
    info.deadline = std::min(info.deadline, info.started_time + info.start_to_close_timeout);
  }
  if (info.schedule_to_close_timeout > absl::ZeroDuration() &&
      info.scheduled_time != absl::InfinitePast()) {
    info.deadline = std::min(info.deadline, info.scheduled_time + info.schedule_to_close_timeout);
  }
  info.header = task.header();
  info.task_token = task.task_token();
  return info;
}

std::string_view CancelReasonName(CancelReason reason) {
  switch (reason) {
    case CancelReason::kNone:
      return "none";
    case CancelReason::kRequested:
      return "requested";
    case CancelReason::kWorkerShutdown:
      return "worker_shutdown";
    case CancelReason::kDeadline:
      return "deadline";
    case CancelReason::kNotRunning:
      return "not_running";
  }
  return "?";
}

// ---- The context ---------------------------------------------------------------------------

// Everything alarms and heartbeat callbacks touch. They hold it by shared_ptr and check
// `closed` before using `recorder` (which lives only until Close returns).
struct ActivityContext::State {
  std::string task_token;
  std::string activity_id;
  Clock* clock;
  Logger* logger;
  HeartbeatRecorder* recorder;
  absl::Duration interval;
  std::shared_ptr<absl::Notification> cancelled;

  absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;
  CancelReason reason ABSL_GUARDED_BY(mu) = CancelReason::kNone;
  // A heartbeat call is held while one is in flight or the interval has not passed.
  bool has_pending ABSL_GUARDED_BY(mu) = false;
  api::Payloads pending ABSL_GUARDED_BY(mu);
  api::Payloads latest ABSL_GUARDED_BY(mu);
  bool sending ABSL_GUARDED_BY(mu) = false;
  absl::Time next_send ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  AlarmId send_alarm ABSL_GUARDED_BY(mu) = 0;
  AlarmId deadline_alarm ABSL_GUARDED_BY(mu) = 0;
  // Calls into `recorder` under way outside the lock; Close waits for them.
  int starting ABSL_GUARDED_BY(mu) = 0;

  void CancelLocked(CancelReason r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (reason != CancelReason::kNone) return;
    reason = r;
    cancelled->Notify();
  }

  // Decides what to do with a held heartbeat: send it now (returns true, with `out` filled
  // and a send marked in flight), or set an alarm for when the interval ends.
  static bool TakeSendLocked(const std::shared_ptr<State>& s, api::Payloads* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
    if (s->closed || s->sending || s->send_alarm != 0 || !s->has_pending) return false;
    absl::Time now = s->clock->Now();
    if (now < s->next_send) {
      s->send_alarm = s->clock->ScheduleAlarm(s->next_send, [s] { OnAlarm(s); });
      return false;
    }
    s->sending = true;
    s->has_pending = false;
    s->next_send = now + s->interval;
    *out = std::move(s->pending);
    s->pending.Clear();
    ++s->starting;
    return true;
  }

  // Starts a send taken by TakeSendLocked; called without the lock.
  static void Send(const std::shared_ptr<State>& s, api::Payloads details) {
    api::Payloads copy = details;
    s->recorder->RecordHeartbeat(
        s->task_token, copy,
        [s, sent = std::move(details)](absl::StatusOr<bool> result) { OnSent(s, sent, result); });
    absl::MutexLock lock(&s->mu);
    --s->starting;
  }

  static void OnAlarm(const std::shared_ptr<State>& s) {
    api::Payloads details;
    {
      absl::MutexLock lock(&s->mu);
      s->send_alarm = 0;
      if (!TakeSendLocked(s, &details)) return;
    }
    Send(s, std::move(details));
  }

  static void OnSent(const std::shared_ptr<State>& s, const api::Payloads& sent,
                     const absl::StatusOr<bool>& result) {
    api::Payloads details;
    {
      absl::MutexLock lock(&s->mu);
      s->sending = false;
      if (result.ok()) {
        if (*result) s->CancelLocked(CancelReason::kRequested);
      } else if (absl::IsNotFound(result.status()) || absl::IsFailedPrecondition(result.status())) {
        // The engine has closed this attempt: the work can stop.
        s->CancelLocked(CancelReason::kNotRunning);
      } else {
        const absl::Status& error = result.status();
        bool transient = absl::IsUnavailable(error) || absl::IsDeadlineExceeded(error) ||
                         absl::IsResourceExhausted(error) || absl::IsAborted(error);
        if (transient && !s->has_pending) {
          // Nothing newer is held: try these details again at the next interval. (Details
          // the engine refused, e.g. too large, would only be refused again.)
          s->pending = sent;
          s->has_pending = true;
        }
        if (!s->closed) {
          s->logger->Log(LogLevel::kWarn, "activity.heartbeat_failed",
                         {{"activity_id", s->activity_id}, {"error", result.status()}});
        }
      }
      if (!TakeSendLocked(s, &details)) return;
    }
    Send(s, std::move(details));
  }
};

ActivityContext::ActivityContext(ActivityInfo info, api::Payloads previous_heartbeat_details,
                                 HeartbeatRecorder* recorder, ActivityContextOptions options)
    : info_(std::move(info)),
      previous_details_(std::move(previous_heartbeat_details)),
      converter_(options.converter != nullptr ? options.converter : &DefaultConverter()),
      logger_(options.logger != nullptr ? options.logger : &DefaultLogger(), &info_),
      cancelled_(std::make_shared<absl::Notification>()),
      state_(std::make_shared<State>()) {
  State& s = *state_;
  s.task_token = info_.task_token;
  s.activity_id = info_.activity_id;
  s.clock = options.clock != nullptr ? options.clock : RealClock::Default();
  s.logger = options.logger != nullptr ? options.logger : &DefaultLogger();
  s.recorder = recorder;
  s.cancelled = cancelled_;
  s.interval = options.heartbeat_interval;
  if (s.interval <= absl::ZeroDuration()) {
    s.interval = info_.heartbeat_timeout > absl::ZeroDuration() ? info_.heartbeat_timeout * 0.8
                                                                : kDefaultHeartbeatInterval;
  }
  if (info_.deadline != absl::InfiniteFuture()) {
    absl::MutexLock lock(&s.mu);
    s.deadline_alarm = s.clock->ScheduleAlarm(info_.deadline, [st = state_] {
      absl::MutexLock lock(&st->mu);
      st->deadline_alarm = 0;
      st->CancelLocked(CancelReason::kDeadline);
    });
  }
}

ActivityContext::~ActivityContext() { Close(); }

void ActivityContext::Heartbeat(const api::Payloads& details) {
  api::Payloads to_send;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->closed) return;
    if (details.payloads_size() > 0) {
      state_->pending = details;
      state_->latest = details;
    }
    state_->has_pending = true;
    if (!State::TakeSendLocked(state_, &to_send)) return;
  }
  State::Send(state_, std::move(to_send));
}

CancelReason ActivityContext::cancel_reason() const {
  absl::MutexLock lock(&state_->mu);
  return state_->reason;
}

bool ActivityContext::WaitForCancellation(absl::Duration timeout) {
  if (cancelled()) return true;
  if (timeout <= absl::ZeroDuration()) return false;
  if (timeout == absl::InfiniteDuration()) {
    cancelled_->WaitForNotification();
    return true;
  }
  // The alarm owns its flag (shared) so it may fire after this returns.
  auto timed_out = std::make_shared<bool>(false);
  std::shared_ptr<State> s = state_;
  AlarmId alarm = s->clock->ScheduleAlarm(s->clock->Now() + timeout, [s, timed_out] {
    absl::MutexLock lock(&s->mu);
    *timed_out = true;
  });
  bool result;
  {
    absl::MutexLock lock(&s->mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
      return *timed_out || s->reason != CancelReason::kNone;
    };
    s->mu.Await(absl::Condition(&done));
    result = s->reason != CancelReason::kNone;
  }
  s->clock->CancelAlarm(alarm);
  return result;
}

void ActivityContext::Cancel(CancelReason reason) {
  absl::MutexLock lock(&state_->mu);
  state_->CancelLocked(reason);
}

api::Payloads ActivityContext::last_heartbeat_details() const {
  absl::MutexLock lock(&state_->mu);
  return state_->latest;
}

void ActivityContext::Close() {
  AlarmId send_alarm;
  AlarmId deadline_alarm;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->closed) return;
    state_->closed = true;
    auto idle = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) { return state_->starting == 0; };
    state_->mu.Await(absl::Condition(&idle));
    send_alarm = std::exchange(state_->send_alarm, 0);
    deadline_alarm = std::exchange(state_->deadline_alarm, 0);
  }
  // Alarms that already fire find `closed` set (the deadline one only cancels the context).
  if (send_alarm != 0) state_->clock->CancelAlarm(send_alarm);
  if (deadline_alarm != 0) state_->clock->CancelAlarm(deadline_alarm);
}

}  // namespace kiln::sdk
