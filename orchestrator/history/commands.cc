// HistoryEngine: the commands of a completed workflow task. ApplyCommands is a loop that hands
// each command to the handler of its kind (Handle*). A handler checks the command's attributes
// first (its Check* function, beside it: nothing is written for a refused command), then appends
// the event that records the command, and derives the run's state from that event, so each field is
// written once. A refused command fails the whole task: the mutation is dropped, and the failed
// workflow task records the handler's cause.
#include <algorithm>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/event_state.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/history/retry.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {

// The state an event records (event_state.h): shared with reset.cc, which replays a copy.
internal::ActivityInfo ScheduledActivity(const api::HistoryEvent& event) {
  const auto& e = event.activity_task_scheduled_event_attributes();
  internal::ActivityInfo info;
  info.set_scheduled_event_id(event.event_id());
  info.set_activity_id(e.activity_id());
  info.set_activity_type(e.activity_type().name());
  info.set_task_queue(e.task_queue().name());
  *info.mutable_input() = e.input();
  *info.mutable_header() = e.header();
  *info.mutable_schedule_to_close_timeout() = e.schedule_to_close_timeout();
  *info.mutable_schedule_to_start_timeout() = e.schedule_to_start_timeout();
  *info.mutable_start_to_close_timeout() = e.start_to_close_timeout();
  *info.mutable_heartbeat_timeout() = e.heartbeat_timeout();
  *info.mutable_retry_policy() = e.retry_policy();
  info.set_attempt(1);
  *info.mutable_scheduled_time() = event.event_time();
  *info.mutable_current_attempt_scheduled_time() = event.event_time();
  return info;
}

internal::TimerInfo StartedTimer(const api::HistoryEvent& event, absl::Time fire_time) {
  internal::TimerInfo timer;
  timer.set_timer_id(event.timer_started_event_attributes().timer_id());
  timer.set_started_event_id(event.event_id());
  ToProto(fire_time, timer.mutable_fire_time());
  return timer;
}

namespace {

bool IsMemoRemoval(const api::Payload& value) {
  if (value.ByteSizeLong() == 0) return true;
  auto encoding = value.metadata().find("encoding");
  if (encoding == value.metadata().end()) return false;
  return encoding->second == "binary/null" ||
         (encoding->second == "json/plain" && value.data() == "[]");
}

}  // namespace

void ApplyMemoUpsert(const api::Memo& upsert, api::Memo* run) {
  auto& fields = *run->mutable_fields();
  for (const auto& [name, value] : upsert.fields()) {
    if (IsMemoRemoval(value)) {
      fields.erase(name);
    } else {
      fields[name] = value;
    }
  }
}

namespace {

using ContinueAsNewFn =
    absl::FunctionRef<absl::Status(const api::ContinueAsNewWorkflowExecutionCommandAttributes&)>;

// What every handler works on: the transition, the workflow task completion its commands
// answer, and, once a handler refuses its command, the cause the failed task records.
struct CommandContext {
  Mutation& m;
  int64_t completed_event_id;
  const std::string& identity;
  // Continue-as-new starts the next run, which takes the engine (lifecycle.cc).
  ContinueAsNewFn continue_as_new;
  api::WorkflowTaskFailedCause refused = api::WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED;

  internal::ExecutionState& state() { return m.state(); }
  // `checked` is a Check* function's answer: an error refuses the command with `cause`.
  absl::Status Check(api::WorkflowTaskFailedCause cause, absl::Status checked) {
    if (!checked.ok()) refused = cause;
    return checked;
  }
};

const std::string& OrDefault(const std::string& value, const std::string& default_value) {
  return value.empty() ? default_value : value;
}

// ScheduleActivityTask.

// The timeouts and retry policy an activity runs with: the command's, with defaults applied.
struct ActivitySchedule {
  absl::Duration schedule_to_start;
  absl::Duration start_to_close;
  api::RetryPolicy retry_policy;
};

absl::StatusOr<ActivitySchedule> CheckScheduleActivity(
    const internal::ExecutionState& state, const api::ScheduleActivityTaskCommandAttributes& a) {
  if (a.activity_id().empty() || a.activity_id().size() > limits::kMaxIdLength) {
    return absl::InvalidArgumentError("activity_id must be 1..1000 bytes");
  }
  if (a.activity_type().name().empty()) return absl::InvalidArgumentError("activity_type is empty");
  for (const auto& [id, existing] : state.activities()) {
    if (existing.activity_id() == a.activity_id()) {
      return absl::InvalidArgumentError(
          absl::StrCat("activity id '", a.activity_id(), "' is already pending"));
    }
  }
  if (static_cast<size_t>(state.activities_size()) >= limits::kMaxPendingActivities) {
    return absl::ResourceExhaustedError(
        absl::StrCat("run has ", limits::kMaxPendingActivities, " pending activities (limit)"));
  }
  if (a.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("activity input exceeds ", limits::kMaxPayloadBytes, " bytes"));
  }
  const absl::Duration schedule_to_close = FromProto(a.schedule_to_close_timeout());
  absl::Duration start_to_close = FromProto(a.start_to_close_timeout());
  absl::Duration schedule_to_start = FromProto(a.schedule_to_start_timeout());
  const absl::Duration heartbeat = FromProto(a.heartbeat_timeout());
  if (schedule_to_close < absl::ZeroDuration() || start_to_close < absl::ZeroDuration() ||
      schedule_to_start < absl::ZeroDuration() || heartbeat < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must not be negative");
  }
  if (schedule_to_close == absl::ZeroDuration() && start_to_close == absl::ZeroDuration()) {
    return absl::InvalidArgumentError("set start_to_close_timeout or schedule_to_close_timeout");
  }
  if (start_to_close == absl::ZeroDuration()) start_to_close = schedule_to_close;
  if (schedule_to_close > absl::ZeroDuration()) {
    start_to_close = std::min(start_to_close, schedule_to_close);
    if (schedule_to_start > schedule_to_close) schedule_to_start = schedule_to_close;
  }
  ActivitySchedule schedule{schedule_to_start, start_to_close, a.retry_policy()};
  RETURN_IF_ERROR(NormalizeRetryPolicy(&schedule.retry_policy));
  return schedule;
}

absl::Status HandleScheduleActivity(CommandContext& c,
                                    const api::ScheduleActivityTaskCommandAttributes& a) {
  absl::StatusOr<ActivitySchedule> schedule = CheckScheduleActivity(c.state(), a);
  RETURN_IF_ERROR(c.Check(absl::IsResourceExhausted(schedule.status())
                              ? api::WORKFLOW_TASK_FAILED_CAUSE_PENDING_ACTIVITIES_LIMIT_EXCEEDED
                              : api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES,
                          schedule.status()));
  Mutation& m = c.m;
  api::HistoryEvent* event = m.Append(api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
  auto* e = event->mutable_activity_task_scheduled_event_attributes();
  e->set_activity_id(a.activity_id());
  *e->mutable_activity_type() = a.activity_type();
  e->mutable_task_queue()->set_name(OrDefault(a.task_queue().name(), c.state().task_queue()));
  *e->mutable_header() = a.header();
  *e->mutable_input() = a.input();
  *e->mutable_schedule_to_close_timeout() = a.schedule_to_close_timeout();
  ToProto(schedule->schedule_to_start, e->mutable_schedule_to_start_timeout());
  ToProto(schedule->start_to_close, e->mutable_start_to_close_timeout());
  *e->mutable_heartbeat_timeout() = a.heartbeat_timeout();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  *e->mutable_retry_policy() = std::move(schedule->retry_policy);

  const int64_t scheduled_id = event->event_id();
  internal::ActivityInfo& info = (*c.state().mutable_activities())[scheduled_id];
  info = ScheduledActivity(*event);
  ASSIGN_OR_RETURN(int64_t task_id,
                   m.AddTask(keys::TaskKind::kActivity, info.task_queue(), scheduled_id, 1));
  info.set_task_id(task_id);
  if (schedule->schedule_to_start > absl::ZeroDuration()) {
    RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                               m.now() + schedule->schedule_to_start, scheduled_id, 1,
                               api::TIMEOUT_TYPE_SCHEDULE_TO_START)
                        .status());
    info.set_schedule_to_start_timer_key(m.last_timer_key());
  }
  const absl::Duration schedule_to_close = FromProto(a.schedule_to_close_timeout());
  if (schedule_to_close > absl::ZeroDuration()) {
    RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                               m.now() + schedule_to_close, scheduled_id, 0,
                               api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE)
                        .status());
    info.set_schedule_to_close_timer_key(m.last_timer_key());
  }
  return absl::OkStatus();
}

// RequestCancelActivityTask.

absl::Status CheckRequestCancelActivity(const internal::ExecutionState& state,
                                        const api::RequestCancelActivityTaskCommandAttributes& a) {
  if (!state.activities().contains(a.scheduled_event_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("no pending activity scheduled by event ", a.scheduled_event_id()));
  }
  return absl::OkStatus();
}

absl::Status HandleRequestCancelActivity(CommandContext& c,
                                         const api::RequestCancelActivityTaskCommandAttributes& a) {
  RETURN_IF_ERROR(c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                          CheckRequestCancelActivity(c.state(), a)));
  Mutation& m = c.m;
  const int64_t scheduled_id = a.scheduled_event_id();
  api::HistoryEvent* requested = m.Append(api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED);
  auto* e = requested->mutable_activity_task_cancel_requested_event_attributes();
  e->set_scheduled_event_id(scheduled_id);
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  auto it = c.state().mutable_activities()->find(scheduled_id);
  internal::ActivityInfo& info = it->second;
  if (!IsSet(info.started_time())) {
    // Not running anywhere: cancelled at once.
    m.DeleteTask(keys::TaskKind::kActivity, info.task_queue(), info.task_id());
    auto* canceled = m.Append(api::EVENT_TYPE_ACTIVITY_TASK_CANCELED)
                         ->mutable_activity_task_canceled_event_attributes();
    canceled->set_scheduled_event_id(scheduled_id);
    canceled->set_latest_cancel_requested_event_id(requested->event_id());
    c.state().mutable_activities()->erase(it);
  } else {
    // The worker hears it in its next heartbeat answer.
    info.set_cancel_requested(true);
    info.set_cancel_requested_event_id(requested->event_id());
  }
  return absl::OkStatus();
}

// StartTimer.

absl::Status CheckStartTimer(const internal::ExecutionState& state,
                             const api::StartTimerCommandAttributes& a) {
  if (a.timer_id().empty() || a.timer_id().size() > limits::kMaxIdLength) {
    return absl::InvalidArgumentError("timer_id must be 1..1000 bytes");
  }
  if (state.timers().contains(a.timer_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("timer id '", a.timer_id(), "' is already pending"));
  }
  if (static_cast<size_t>(state.timers_size()) >= limits::kMaxPendingTimers) {
    return absl::InvalidArgumentError(
        absl::StrCat("run has ", limits::kMaxPendingTimers, " pending timers (limit)"));
  }
  if (FromProto(a.start_to_fire_timeout()) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("start_to_fire_timeout must be positive");
  }
  return absl::OkStatus();
}

absl::Status HandleStartTimer(CommandContext& c, const api::StartTimerCommandAttributes& a) {
  RETURN_IF_ERROR(c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_BAD_START_TIMER_ATTRIBUTES,
                          CheckStartTimer(c.state(), a)));
  Mutation& m = c.m;
  api::HistoryEvent* event = m.Append(api::EVENT_TYPE_TIMER_STARTED);
  auto* e = event->mutable_timer_started_event_attributes();
  e->set_timer_id(a.timer_id());
  *e->mutable_start_to_fire_timeout() = a.start_to_fire_timeout();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  const absl::Time fire_time = m.now() + FromProto(a.start_to_fire_timeout());
  ASSIGN_OR_RETURN(int64_t task_id,
                   m.AddTimer(internal::TIMER_TASK_TYPE_USER_TIMER, fire_time, event->event_id(), 0,
                              api::TIMEOUT_TYPE_UNSPECIFIED, a.timer_id()));
  internal::TimerInfo& timer = (*c.state().mutable_timers())[a.timer_id()];
  timer = StartedTimer(*event, fire_time);
  timer.set_task_id(task_id);
  return absl::OkStatus();
}

// CancelTimer.

absl::Status CheckCancelTimer(const internal::ExecutionState& state,
                              const api::CancelTimerCommandAttributes& a) {
  if (!state.timers().contains(a.timer_id())) {
    return absl::InvalidArgumentError(absl::StrCat("no pending timer '", a.timer_id(), "'"));
  }
  return absl::OkStatus();
}

absl::Status HandleCancelTimer(CommandContext& c, const api::CancelTimerCommandAttributes& a) {
  RETURN_IF_ERROR(c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_BAD_CANCEL_TIMER_ATTRIBUTES,
                          CheckCancelTimer(c.state(), a)));
  Mutation& m = c.m;
  auto it = c.state().mutable_timers()->find(a.timer_id());
  const internal::TimerInfo& timer = it->second;
  m.Delete(Table::kTimers, keys::Timer(FromProto(timer.fire_time()), timer.task_id()));
  auto* e = m.Append(api::EVENT_TYPE_TIMER_CANCELED)->mutable_timer_canceled_event_attributes();
  e->set_timer_id(a.timer_id());
  e->set_started_event_id(timer.started_event_id());
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  e->set_identity(c.identity);
  c.state().mutable_timers()->erase(it);
  return absl::OkStatus();
}

// RecordMarker.

absl::Status CheckRecordMarker(const api::RecordMarkerCommandAttributes& a) {
  if (a.marker_name().empty()) return absl::InvalidArgumentError("marker_name is empty");
  return absl::OkStatus();
}

absl::Status HandleRecordMarker(CommandContext& c, const api::RecordMarkerCommandAttributes& a) {
  RETURN_IF_ERROR(c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, CheckRecordMarker(a)));
  auto* e = c.m.Append(api::EVENT_TYPE_MARKER_RECORDED)->mutable_marker_recorded_event_attributes();
  e->set_marker_name(a.marker_name());
  *e->mutable_details() = a.details();
  *e->mutable_header() = a.header();
  // Only when there is one: a marker with a failure, even an empty one, is a failed local
  // activity to Temporal's SDKs when they replay it.
  if (a.has_failure()) *e->mutable_failure() = a.failure();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  return absl::OkStatus();
}

// UpsertWorkflowSearchAttributes (checked by ValidateSearchAttributeUpsert, visibility's; a
// value of null removes the attribute).

absl::Status HandleUpsertSearchAttributes(
    CommandContext& c, const api::UpsertWorkflowSearchAttributesCommandAttributes& a) {
  RETURN_IF_ERROR(c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                          ValidateSearchAttributeUpsert(a.search_attributes())));
  auto* e = c.m.Append(api::EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
                ->mutable_upsert_workflow_search_attributes_event_attributes();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  *e->mutable_search_attributes() = a.search_attributes();
  ApplySearchAttributeUpsert(e->search_attributes(), c.state().mutable_search_attributes());
  c.m.TouchVisibility();
  return absl::OkStatus();
}

// ModifyWorkflowProperties: the memo's fields merged into the run's (describe and list return
// it); the memo as it ends must stay within the start's limit.

absl::StatusOr<api::Memo> CheckModifyWorkflowProperties(
    const internal::ExecutionState& state,
    const api::ModifyWorkflowPropertiesCommandAttributes& a) {
  if (!a.has_upserted_memo()) return absl::InvalidArgumentError("upserted_memo is not set");
  api::Memo merged = state.memo();
  ApplyMemoUpsert(a.upserted_memo(), &merged);
  if (merged.ByteSizeLong() > limits::kMaxMemoBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the memo would be ", merged.ByteSizeLong(),
                                                   " bytes, over the limit of ",
                                                   limits::kMaxMemoBytes));
  }
  return merged;
}

absl::Status HandleModifyWorkflowProperties(
    CommandContext& c, const api::ModifyWorkflowPropertiesCommandAttributes& a) {
  absl::StatusOr<api::Memo> merged = CheckModifyWorkflowProperties(c.state(), a);
  RETURN_IF_ERROR(c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_BAD_MODIFY_WORKFLOW_PROPERTIES_ATTRIBUTES,
                          merged.status()));
  auto* e = c.m.Append(api::EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED)
                ->mutable_workflow_properties_modified_event_attributes();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  *e->mutable_upserted_memo() = a.upserted_memo();
  *c.state().mutable_memo() = std::move(*merged);
  c.m.TouchVisibility();
  return absl::OkStatus();
}

// CompleteWorkflowExecution, FailWorkflowExecution, CancelWorkflowExecution: the run closes.

absl::Status CheckCompleteWorkflow(const api::CompleteWorkflowExecutionCommandAttributes& a) {
  if (a.result().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("result exceeds ", limits::kMaxPayloadBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status HandleCompleteWorkflow(CommandContext& c,
                                    const api::CompleteWorkflowExecutionCommandAttributes& a) {
  RETURN_IF_ERROR(
      c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_BAD_COMPLETE_WORKFLOW_EXECUTION_ATTRIBUTES,
              CheckCompleteWorkflow(a)));
  auto* e = c.m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
                ->mutable_workflow_execution_completed_event_attributes();
  *e->mutable_result() = a.result();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  return c.m.Close(api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
}

absl::Status HandleFailWorkflow(CommandContext& c,
                                const api::FailWorkflowExecutionCommandAttributes& a) {
  auto* e = c.m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)
                ->mutable_workflow_execution_failed_event_attributes();
  *e->mutable_failure() = a.failure();
  e->set_retry_state(api::RETRY_STATE_RETRY_POLICY_NOT_SET);
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  return c.m.Close(api::WORKFLOW_EXECUTION_STATUS_FAILED);
}

absl::Status HandleCancelWorkflow(CommandContext& c,
                                  const api::CancelWorkflowExecutionCommandAttributes& a) {
  auto* e = c.m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED)
                ->mutable_workflow_execution_canceled_event_attributes();
  *e->mutable_details() = a.details();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  return c.m.Close(api::WORKFLOW_EXECUTION_STATUS_CANCELED);
}

// ContinueAsNewWorkflowExecution.

absl::Status CheckContinueAsNew(const api::ContinueAsNewWorkflowExecutionCommandAttributes& a) {
  if (a.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("continue-as-new input exceeds ", limits::kMaxPayloadBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status HandleContinueAsNew(CommandContext& c,
                                 const api::ContinueAsNewWorkflowExecutionCommandAttributes& a) {
  RETURN_IF_ERROR(
      c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, CheckContinueAsNew(a)));
  return c.continue_as_new(a);
}

// StartChildWorkflowExecution.

absl::Status CheckStartChild(const internal::ExecutionState& state,
                             const api::StartChildWorkflowExecutionCommandAttributes& a) {
  if (a.workflow_id().empty() || a.workflow_id().size() > limits::kMaxIdLength ||
      a.workflow_id().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("child workflow_id must be 1..1000 bytes without NUL");
  }
  if (a.workflow_type().name().empty()) {
    return absl::InvalidArgumentError("child workflow_type is empty");
  }
  if (a.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("child input exceeds ", limits::kMaxPayloadBytes, " bytes"));
  }
  if (static_cast<size_t>(state.children_size()) >= limits::kMaxPendingActivities) {
    return absl::InvalidArgumentError(
        absl::StrCat("run has ", limits::kMaxPendingActivities, " pending children (limit)"));
  }
  return absl::OkStatus();
}

// The pending child a StartChildWorkflowExecutionInitiated event records.
internal::ChildInfo InitiatedChild(const api::HistoryEvent& event) {
  const auto& e = event.start_child_workflow_execution_initiated_event_attributes();
  internal::ChildInfo child;
  child.set_namespace_(e.namespace_());
  child.set_workflow_id(e.workflow_id());
  child.set_workflow_type(e.workflow_type().name());
  child.set_parent_close_policy(e.parent_close_policy() == api::PARENT_CLOSE_POLICY_UNSPECIFIED
                                    ? api::PARENT_CLOSE_POLICY_TERMINATE
                                    : e.parent_close_policy());
  child.set_initiated_event_id(event.event_id());
  return child;
}

absl::Status HandleStartChild(CommandContext& c,
                              const api::StartChildWorkflowExecutionCommandAttributes& a) {
  RETURN_IF_ERROR(
      c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, CheckStartChild(c.state(), a)));
  const internal::ExecutionState& state = c.state();
  api::HistoryEvent* event = c.m.Append(api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED);
  auto* e = event->mutable_start_child_workflow_execution_initiated_event_attributes();
  e->set_namespace_(OrDefault(a.namespace_(), state.namespace_()));
  e->set_workflow_id(a.workflow_id());
  *e->mutable_workflow_type() = a.workflow_type();
  e->mutable_task_queue()->set_name(OrDefault(a.task_queue().name(), state.task_queue()));
  *e->mutable_input() = a.input();
  *e->mutable_workflow_execution_timeout() = a.workflow_execution_timeout();
  *e->mutable_workflow_run_timeout() = a.workflow_run_timeout();
  *e->mutable_workflow_task_timeout() = a.workflow_task_timeout();
  e->set_parent_close_policy(a.parent_close_policy());
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  e->set_workflow_id_reuse_policy(a.workflow_id_reuse_policy());
  *e->mutable_header() = a.header();
  *e->mutable_memo() = a.memo();
  *e->mutable_search_attributes() = a.search_attributes();
  (*c.state().mutable_children())[event->event_id()] = InitiatedChild(*event);
  return c.m.AddTransfer(internal::TIMER_TASK_TYPE_START_CHILD, event->event_id()).status();
}

// SignalExternalWorkflowExecution.

absl::Status CheckSignalExternal(const api::SignalExternalWorkflowExecutionCommandAttributes& a) {
  if (a.execution().workflow_id().empty() || a.signal_name().empty()) {
    return absl::InvalidArgumentError("signal external needs a workflow id and a signal name");
  }
  return absl::OkStatus();
}

// The pending request a SignalExternalWorkflowExecutionInitiated event records.
internal::ExternalRequest InitiatedSignal(const api::HistoryEvent& event) {
  const auto& e = event.signal_external_workflow_execution_initiated_event_attributes();
  internal::ExternalRequest request;
  request.set_namespace_(e.namespace_());
  request.set_workflow_id(e.workflow_execution().workflow_id());
  request.set_run_id(e.workflow_execution().run_id());
  request.set_kind("signal");
  request.set_signal_name(e.signal_name());
  *request.mutable_input() = e.input();
  request.set_control(e.control());
  return request;
}

absl::Status HandleSignalExternal(CommandContext& c,
                                  const api::SignalExternalWorkflowExecutionCommandAttributes& a) {
  RETURN_IF_ERROR(
      c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, CheckSignalExternal(a)));
  api::HistoryEvent* event =
      c.m.Append(api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED);
  auto* e = event->mutable_signal_external_workflow_execution_initiated_event_attributes();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  e->set_namespace_(OrDefault(a.namespace_(), c.state().namespace_()));
  *e->mutable_workflow_execution() = a.execution();
  e->set_signal_name(a.signal_name());
  *e->mutable_input() = a.input();
  e->set_control(a.control());
  e->set_child_workflow_only(a.child_workflow_only());
  (*c.state().mutable_external_requests())[event->event_id()] = InitiatedSignal(*event);
  return c.m.AddTransfer(internal::TIMER_TASK_TYPE_SIGNAL_EXTERNAL, event->event_id()).status();
}

// RequestCancelExternalWorkflowExecution.

absl::Status CheckCancelExternal(
    const api::RequestCancelExternalWorkflowExecutionCommandAttributes& a) {
  if (a.workflow_id().empty()) {
    return absl::InvalidArgumentError("cancel external needs a workflow id");
  }
  return absl::OkStatus();
}

// The pending request a RequestCancelExternalWorkflowExecutionInitiated event records.
internal::ExternalRequest InitiatedCancel(const api::HistoryEvent& event) {
  const auto& e = event.request_cancel_external_workflow_execution_initiated_event_attributes();
  internal::ExternalRequest request;
  request.set_namespace_(e.namespace_());
  request.set_workflow_id(e.workflow_execution().workflow_id());
  request.set_run_id(e.workflow_execution().run_id());
  request.set_kind("cancel");
  request.set_control(e.control());
  request.set_reason(e.reason());
  return request;
}

absl::Status HandleCancelExternal(
    CommandContext& c, const api::RequestCancelExternalWorkflowExecutionCommandAttributes& a) {
  RETURN_IF_ERROR(
      c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, CheckCancelExternal(a)));
  api::HistoryEvent* event =
      c.m.Append(api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED);
  auto* e = event->mutable_request_cancel_external_workflow_execution_initiated_event_attributes();
  e->set_workflow_task_completed_event_id(c.completed_event_id);
  e->set_namespace_(OrDefault(a.namespace_(), c.state().namespace_()));
  e->mutable_workflow_execution()->set_workflow_id(a.workflow_id());
  e->mutable_workflow_execution()->set_run_id(a.run_id());
  e->set_control(a.control());
  e->set_reason(a.reason());
  (*c.state().mutable_external_requests())[event->event_id()] = InitiatedCancel(*event);
  return c.m.AddTransfer(internal::TIMER_TASK_TYPE_CANCEL_EXTERNAL, event->event_id()).status();
}

// One command, to the handler of its kind.
absl::Status HandleCommand(CommandContext& c, const api::Command& command) {
  constexpr auto kUnhandled = api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND;
  if (!c.m.IsOpen()) {
    return c.Check(kUnhandled, absl::InvalidArgumentError("commands after the workflow closed"));
  }
  switch (command.command_type()) {
    case api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK:
      // Unlike the other commands', an activity's attributes have no usable defaults.
      if (!command.has_schedule_activity_task_command_attributes()) {
        return c.Check(api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES,
                       absl::InvalidArgumentError("schedule activity without attributes"));
      }
      return HandleScheduleActivity(c, command.schedule_activity_task_command_attributes());
    case api::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK:
      return HandleRequestCancelActivity(c,
                                         command.request_cancel_activity_task_command_attributes());
    case api::COMMAND_TYPE_START_TIMER:
      return HandleStartTimer(c, command.start_timer_command_attributes());
    case api::COMMAND_TYPE_CANCEL_TIMER:
      return HandleCancelTimer(c, command.cancel_timer_command_attributes());
    case api::COMMAND_TYPE_RECORD_MARKER:
      return HandleRecordMarker(c, command.record_marker_command_attributes());
    case api::COMMAND_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
      return HandleUpsertSearchAttributes(
          c, command.upsert_workflow_search_attributes_command_attributes());
    case api::COMMAND_TYPE_MODIFY_WORKFLOW_PROPERTIES:
      return HandleModifyWorkflowProperties(
          c, command.modify_workflow_properties_command_attributes());
    case api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION:
      return HandleCompleteWorkflow(c, command.complete_workflow_execution_command_attributes());
    case api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION:
      return HandleFailWorkflow(c, command.fail_workflow_execution_command_attributes());
    case api::COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION:
      return HandleCancelWorkflow(c, command.cancel_workflow_execution_command_attributes());
    case api::COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION:
      return HandleContinueAsNew(c,
                                 command.continue_as_new_workflow_execution_command_attributes());
    case api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION:
      return HandleStartChild(c, command.start_child_workflow_execution_command_attributes());
    case api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION:
      return HandleSignalExternal(c,
                                  command.signal_external_workflow_execution_command_attributes());
    case api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION:
      return HandleCancelExternal(
          c, command.request_cancel_external_workflow_execution_command_attributes());
    default:
      return c.Check(kUnhandled, absl::InvalidArgumentError(absl::StrCat(
                                     "command type ", api::CommandType_Name(command.command_type()),
                                     " is not supported")));
  }
}

}  // namespace

absl::Status HistoryEngine::ApplyCommands(Mutation& m,
                                          const api::RespondWorkflowTaskCompletedRequest& request,
                                          int64_t completed_event_id,
                                          api::WorkflowTaskFailedCause* cause,
                                          std::unique_ptr<Mutation>* new_run, WriteBatch* extra) {
  if (static_cast<size_t>(request.commands_size()) > limits::kMaxCommandsPerTask) {
    *cause = api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND;
    return absl::InvalidArgumentError(absl::StrCat("a workflow task may answer with at most ",
                                                   limits::kMaxCommandsPerTask, " commands"));
  }
  auto continue_as_new = [&](const api::ContinueAsNewWorkflowExecutionCommandAttributes& a) {
    return ContinueAsNew(m, a, completed_event_id, new_run, extra);
  };
  CommandContext context{.m = m,
                         .completed_event_id = completed_event_id,
                         .identity = request.identity(),
                         .continue_as_new = continue_as_new};
  for (int i = 0; i < request.commands_size(); ++i) {
    absl::Status handled = HandleCommand(context, request.commands(i));
    if (handled.ok()) continue;
    if (context.refused == api::WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED) return handled;
    *cause = context.refused;
    return absl::Status(handled.code(), absl::StrCat("command ", i, ": ", handled.message()));
  }
  return absl::OkStatus();
}

}  // namespace kiln::orchestrator
