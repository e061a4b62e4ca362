// One line of text per history event; see event_format.h.
#include "cli/event_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/format.h"

namespace kiln::cli {
namespace {

namespace api = ::kiln::api::v1;
using Event = api::HistoryEvent;

std::string RetryStateName(api::RetryState state) {
  return StripEnumPrefix(api::RetryState_Name(state), "RETRY_STATE_");
}

// Durations appear only when set: an unset one is the engine's default, not zero.
void AddDurationIfSet(KeyValues& kv, absl::string_view key, const google::protobuf::Duration& d) {
  if (d.seconds() != 0 || d.nanos() != 0) kv.Add(key, DurationText(d));
}

void AddFailure(KeyValues& kv, absl::string_view key, const api::Failure& failure) {
  if (!failure.message().empty() || failure.has_application_failure_info()) {
    kv.Add(key, FailureSummary(failure));
  }
}

void AddRetryState(KeyValues& kv, api::RetryState state) {
  if (state != api::RETRY_STATE_UNSPECIFIED) kv.Add("retry_state", RetryStateName(state));
}

void WorkflowAttributes(const Event& e, KeyValues& kv) {
  switch (e.attributes_case()) {
    case Event::kWorkflowExecutionStartedEventAttributes: {
      const auto& a = e.workflow_execution_started_event_attributes();
      kv.Add("type", a.workflow_type().name()).Add("task_queue", a.task_queue().name());
      kv.AddIfSet("input", PayloadsSummary(a.input()));
      AddDurationIfSet(kv, "run_timeout", a.workflow_run_timeout());
      AddDurationIfSet(kv, "execution_timeout", a.workflow_execution_timeout());
      if (a.attempt() > 1) kv.Add("attempt", a.attempt());
      kv.AddIfSet("continued_from", a.continued_execution_run_id());
      break;
    }
    case Event::kWorkflowExecutionCompletedEventAttributes: {
      const auto& a = e.workflow_execution_completed_event_attributes();
      kv.Add("result", PayloadsSummary(a.result())).AddIfSet("new_run", a.new_execution_run_id());
      break;
    }
    case Event::kWorkflowExecutionFailedEventAttributes: {
      const auto& a = e.workflow_execution_failed_event_attributes();
      kv.Add("failure", FailureSummary(a.failure()));
      AddRetryState(kv, a.retry_state());
      kv.AddIfSet("new_run", a.new_execution_run_id());
      break;
    }
    case Event::kWorkflowExecutionTimedOutEventAttributes: {
      const auto& a = e.workflow_execution_timed_out_event_attributes();
      AddRetryState(kv, a.retry_state());
      kv.AddIfSet("new_run", a.new_execution_run_id());
      break;
    }
    case Event::kWorkflowExecutionTerminatedEventAttributes: {
      const auto& a = e.workflow_execution_terminated_event_attributes();
      kv.Add("reason", a.reason()).AddIfSet("identity", a.identity());
      break;
    }
    case Event::kWorkflowExecutionCancelRequestedEventAttributes: {
      const auto& a = e.workflow_execution_cancel_requested_event_attributes();
      kv.AddIfSet("cause", a.cause()).AddIfSet("identity", a.identity());
      break;
    }
    case Event::kWorkflowExecutionCanceledEventAttributes:
      kv.AddIfSet("details",
                  PayloadsSummary(e.workflow_execution_canceled_event_attributes().details()));
      break;
    case Event::kWorkflowExecutionSignaledEventAttributes: {
      const auto& a = e.workflow_execution_signaled_event_attributes();
      kv.Add("signal", a.signal_name()).AddIfSet("input", PayloadsSummary(a.input()));
      break;
    }
    case Event::kWorkflowExecutionContinuedAsNewEventAttributes: {
      const auto& a = e.workflow_execution_continued_as_new_event_attributes();
      kv.Add("new_run", a.new_execution_run_id()).Add("type", a.workflow_type().name());
      kv.AddIfSet("input", PayloadsSummary(a.input()));
      break;
    }
    default:
      break;
  }
}

void WorkflowTaskAttributes(const Event& e, KeyValues& kv) {
  switch (e.attributes_case()) {
    case Event::kWorkflowTaskScheduledEventAttributes: {
      const auto& a = e.workflow_task_scheduled_event_attributes();
      kv.Add("task_queue", a.task_queue().name());
      if (a.attempt() > 1) kv.Add("attempt", a.attempt());
      break;
    }
    case Event::kWorkflowTaskStartedEventAttributes: {
      const auto& a = e.workflow_task_started_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).AddIfSet("identity", a.identity());
      break;
    }
    case Event::kWorkflowTaskCompletedEventAttributes: {
      const auto& a = e.workflow_task_completed_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).Add("started", a.started_event_id());
      break;
    }
    case Event::kWorkflowTaskTimedOutEventAttributes: {
      const auto& a = e.workflow_task_timed_out_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).AddIfSet("started", a.started_event_id());
      kv.Add("timeout", StripEnumPrefix(api::TimeoutType_Name(a.timeout_type()), "TIMEOUT_TYPE_"));
      break;
    }
    case Event::kWorkflowTaskFailedEventAttributes: {
      const auto& a = e.workflow_task_failed_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).AddIfSet("started", a.started_event_id());
      kv.Add("cause", StripEnumPrefix(api::WorkflowTaskFailedCause_Name(a.cause()),
                                      "WORKFLOW_TASK_FAILED_CAUSE_"));
      AddFailure(kv, "failure", a.failure());
      kv.AddIfSet("base_run", a.base_run_id()).AddIfSet("new_run", a.new_run_id());
      break;
    }
    default:
      break;
  }
}

void ActivityAttributes(const Event& e, KeyValues& kv) {
  switch (e.attributes_case()) {
    case Event::kActivityTaskScheduledEventAttributes: {
      const auto& a = e.activity_task_scheduled_event_attributes();
      kv.Add("activity_id", a.activity_id()).Add("type", a.activity_type().name());
      kv.AddIfSet("input", PayloadsSummary(a.input()));
      break;
    }
    case Event::kActivityTaskStartedEventAttributes: {
      const auto& a = e.activity_task_started_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).Add("attempt", a.attempt());
      AddFailure(kv, "last_failure", a.last_failure());
      break;
    }
    case Event::kActivityTaskCompletedEventAttributes: {
      const auto& a = e.activity_task_completed_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).Add("result", PayloadsSummary(a.result()));
      break;
    }
    case Event::kActivityTaskFailedEventAttributes: {
      const auto& a = e.activity_task_failed_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).Add("failure", FailureSummary(a.failure()));
      AddRetryState(kv, a.retry_state());
      break;
    }
    case Event::kActivityTaskTimedOutEventAttributes: {
      const auto& a = e.activity_task_timed_out_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id());
      AddFailure(kv, "failure", a.failure());
      AddRetryState(kv, a.retry_state());
      break;
    }
    case Event::kActivityTaskCancelRequestedEventAttributes:
      kv.Add("scheduled", e.activity_task_cancel_requested_event_attributes().scheduled_event_id());
      break;
    case Event::kActivityTaskCanceledEventAttributes: {
      const auto& a = e.activity_task_canceled_event_attributes();
      kv.Add("scheduled", a.scheduled_event_id()).AddIfSet("details", PayloadsSummary(a.details()));
      break;
    }
    default:
      break;
  }
}

void OtherAttributes(const Event& e, KeyValues& kv) {
  switch (e.attributes_case()) {
    case Event::kTimerStartedEventAttributes: {
      const auto& a = e.timer_started_event_attributes();
      kv.Add("timer_id", a.timer_id()).Add("timeout", DurationText(a.start_to_fire_timeout()));
      break;
    }
    case Event::kTimerFiredEventAttributes: {
      const auto& a = e.timer_fired_event_attributes();
      kv.Add("timer_id", a.timer_id()).Add("started", a.started_event_id());
      break;
    }
    case Event::kTimerCanceledEventAttributes: {
      const auto& a = e.timer_canceled_event_attributes();
      kv.Add("timer_id", a.timer_id()).Add("started", a.started_event_id());
      break;
    }
    case Event::kMarkerRecordedEventAttributes: {
      const auto& a = e.marker_recorded_event_attributes();
      kv.Add("name", a.marker_name());
      AddFailure(kv, "failure", a.failure());
      break;
    }
    case Event::kUpsertWorkflowSearchAttributesEventAttributes: {
      std::vector<std::string> keys;
      for (const auto& [key, value] : e.upsert_workflow_search_attributes_event_attributes()
                                          .search_attributes()
                                          .indexed_fields()) {
        keys.push_back(key);
      }
      std::sort(keys.begin(), keys.end());  // map order is unspecified
      kv.Add("keys", Truncate(absl::StrJoin(keys, ","), kMaxValueChars));
      break;
    }
    default:
      break;
  }
}

}  // namespace

std::string EventTypeName(api::EventType type) {
  std::string name = EnumToCamelCase(api::EventType_Name(type), "EVENT_TYPE_");
  if (name.empty()) return absl::StrCat("EventType(", static_cast<int>(type), ")");
  return name;
}

std::string EventAttributesSummary(const Event& event) {
  KeyValues kv;
  WorkflowAttributes(event, kv);
  WorkflowTaskAttributes(event, kv);
  ActivityAttributes(event, kv);
  OtherAttributes(event, kv);
  return kv.str();
}

std::string FormatEventLine(const Event& event) {
  std::string line =
      absl::StrFormat("%3d  %s  %s", event.event_id(), FormatTimestamp(event.event_time()),
                      EventTypeName(event.event_type()));
  std::string attributes = EventAttributesSummary(event);
  if (!attributes.empty()) absl::StrAppend(&line, "  ", attributes);
  return line;
}

}  // namespace kiln::cli
