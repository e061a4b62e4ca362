// HistoryEngine: reset. A new run of the same workflow id whose history is a copy of an old
// run's up to a workflow task's started event (the point), then a WorkflowTaskFailed with cause
// RESET_WORKFLOW (the worker replays the copy and drops that task's commands), the signals the
// old run received after the point, and a new workflow task. The pending work the copy records
// (activities, user timers) is dispatched again in the new run. The old run, if open, is
// terminated in the same transition ("reset to run <new>: <reason>"), and the workflow id's
// current pointer moves to the new run: one batch, so a crash leaves either no reset or all of it.
//
// Not supported (kFailedPrecondition, each naming why): a child run (its parent waits on the
// old run), a point with a child workflow or an external signal/cancel pending (the other run
// answers the old run), an old run that is not the current one while the current one is open.
#include <algorithm>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/event_state.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {
namespace {

std::string EventName(api::EventType type) {
  std::string name = api::EventType_Name(type);
  constexpr std::string_view kPrefix = "EVENT_TYPE_";
  if (name.starts_with(kPrefix)) name.erase(0, kPrefix.size());
  return name;
}

// The started event id of the workflow task `request` names, checked against `history` (the
// run's whole history, events 1..).
absl::StatusOr<int64_t> ResolveResetPoint(const api::ResetWorkflowExecutionRequest& request,
                                          const internal::ExecutionState& state,
                                          const api::History& history) {
  const int64_t last = history.events_size();
  switch (request.reset_point()) {
    case api::RESET_POINT_FIRST_WORKFLOW_TASK:
      for (const api::HistoryEvent& event : history.events()) {
        if (event.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED) {
          return event.workflow_task_completed_event_attributes().started_event_id();
        }
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "workflow run ", state.run_id(), " has no completed workflow task to reset to"));
    case api::RESET_POINT_LAST_WORKFLOW_TASK:
      if (state.last_completed_workflow_task_started_event_id() == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "workflow run ", state.run_id(), " has no completed workflow task to reset to"));
      }
      return state.last_completed_workflow_task_started_event_id();
    default:
      break;
  }
  const int64_t id = request.workflow_task_finish_event_id();
  if (id <= 0 || id > last) {
    return absl::InvalidArgumentError(absl::StrCat("workflow_task_finish_event_id: event ", id,
                                                   " is not in the history of run ", state.run_id(),
                                                   " (events 1..", last, ")"));
  }
  const api::HistoryEvent& event = history.events(static_cast<int>(id - 1));
  int64_t started = 0;
  switch (event.event_type()) {
    case api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
      started = event.workflow_task_completed_event_attributes().started_event_id();
      break;
    case api::EVENT_TYPE_WORKFLOW_TASK_FAILED:
      started = event.workflow_task_failed_event_attributes().started_event_id();
      break;
    case api::EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
      started = event.workflow_task_timed_out_event_attributes().started_event_id();
      break;
    case api::EVENT_TYPE_WORKFLOW_TASK_STARTED:
      started = id;
      break;
    case api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
      for (int64_t next = id + 1; next <= last; ++next) {
        const api::HistoryEvent& e = history.events(static_cast<int>(next - 1));
        if (e.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED &&
            e.workflow_task_started_event_attributes().scheduled_event_id() == id) {
          started = next;
          break;
        }
      }
      if (started == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("workflow_task_finish_event_id: the workflow task scheduled by event ", id,
                         " never started: reset to an earlier workflow task"));
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "workflow_task_finish_event_id: event ", id, " is a ", EventName(event.event_type()),
          ", not a workflow task event: reset to a WorkflowTaskCompleted, WorkflowTaskStarted or "
          "WorkflowTaskScheduled event (or to the first or last workflow task)"));
  }
  if (started <= 0 || started > last ||
      history.events(static_cast<int>(started - 1)).event_type() !=
          api::EVENT_TYPE_WORKFLOW_TASK_STARTED) {
    return absl::InvalidArgumentError(absl::StrCat("workflow_task_finish_event_id: event ", id,
                                                   " ends a workflow task that never started"));
  }
  return started;
}

// The initiated event id of the child workflow or external request an event resolves (0: it
// resolves none).
int64_t ResolvedInitiatedId(const api::HistoryEvent& e) {
  switch (e.attributes_case()) {
    case api::HistoryEvent::kStartChildWorkflowExecutionFailedEventAttributes:
      return e.start_child_workflow_execution_failed_event_attributes().initiated_event_id();
    case api::HistoryEvent::kChildWorkflowExecutionCompletedEventAttributes:
      return e.child_workflow_execution_completed_event_attributes().initiated_event_id();
    case api::HistoryEvent::kChildWorkflowExecutionFailedEventAttributes:
      return e.child_workflow_execution_failed_event_attributes().initiated_event_id();
    case api::HistoryEvent::kChildWorkflowExecutionCanceledEventAttributes:
      return e.child_workflow_execution_canceled_event_attributes().initiated_event_id();
    case api::HistoryEvent::kChildWorkflowExecutionTimedOutEventAttributes:
      return e.child_workflow_execution_timed_out_event_attributes().initiated_event_id();
    case api::HistoryEvent::kChildWorkflowExecutionTerminatedEventAttributes:
      return e.child_workflow_execution_terminated_event_attributes().initiated_event_id();
    case api::HistoryEvent::kSignalExternalWorkflowExecutionFailedEventAttributes:
      return e.signal_external_workflow_execution_failed_event_attributes().initiated_event_id();
    case api::HistoryEvent::kExternalWorkflowExecutionSignaledEventAttributes:
      return e.external_workflow_execution_signaled_event_attributes().initiated_event_id();
    case api::HistoryEvent::kRequestCancelExternalWorkflowExecutionFailedEventAttributes:
      return e.request_cancel_external_workflow_execution_failed_event_attributes()
          .initiated_event_id();
    case api::HistoryEvent::kExternalWorkflowExecutionCancelRequestedEventAttributes:
      return e.external_workflow_execution_cancel_requested_event_attributes().initiated_event_id();
    default:
      return 0;
  }
}

// Replays events 1..`count` of `history` into `state` (identity fields already set): the
// workflow task, pending activities and timers, signals, cancellation, search attributes and
// the history's size, as the transitions that wrote them left the state.
absl::Status ReplayState(const api::History& history, int64_t count,
                         internal::ExecutionState* state) {
  std::vector<int64_t> pending_initiated;
  int64_t bytes = 0;
  for (int i = 0; i < count; ++i) {
    const api::HistoryEvent& e = history.events(i);
    bytes += static_cast<int64_t>(e.ByteSizeLong());
    switch (e.event_type()) {
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        *state->mutable_search_attributes() =
            e.workflow_execution_started_event_attributes().search_attributes();
        *state->mutable_memo() = e.workflow_execution_started_event_attributes().memo();
        break;
      case api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: {
        auto* wt = state->mutable_workflow_task();
        wt->Clear();
        wt->set_scheduled_event_id(e.event_id());
        wt->set_attempt(e.workflow_task_scheduled_event_attributes().attempt());
        *wt->mutable_scheduled_time() = e.event_time();
        break;
      }
      case api::EVENT_TYPE_WORKFLOW_TASK_STARTED:
        state->mutable_workflow_task()->set_started_event_id(e.event_id());
        *state->mutable_workflow_task()->mutable_started_time() = e.event_time();
        break;
      case api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        state->set_last_completed_workflow_task_started_event_id(
            e.workflow_task_completed_event_attributes().started_event_id());
        state->clear_workflow_task();
        break;
      case api::EVENT_TYPE_WORKFLOW_TASK_FAILED:
      case api::EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
        state->clear_workflow_task();
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        (*state->mutable_activities())[e.event_id()] = ScheduledActivity(e);
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: {
        const auto& a = e.activity_task_cancel_requested_event_attributes();
        auto it = state->mutable_activities()->find(a.scheduled_event_id());
        if (it != state->mutable_activities()->end()) {
          it->second.set_cancel_requested(true);
          it->second.set_cancel_requested_event_id(e.event_id());
        }
        break;
      }
      case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        state->mutable_activities()->erase(
            e.activity_task_completed_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_FAILED:
        state->mutable_activities()->erase(
            e.activity_task_failed_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        state->mutable_activities()->erase(
            e.activity_task_timed_out_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_CANCELED:
        state->mutable_activities()->erase(
            e.activity_task_canceled_event_attributes().scheduled_event_id());
        break;
      case api::EVENT_TYPE_TIMER_STARTED: {
        const auto& a = e.timer_started_event_attributes();
        (*state->mutable_timers())[a.timer_id()] =
            StartedTimer(e, FromProto(e.event_time()) + FromProto(a.start_to_fire_timeout()));
        break;
      }
      case api::EVENT_TYPE_TIMER_FIRED:
        state->mutable_timers()->erase(e.timer_fired_event_attributes().timer_id());
        break;
      case api::EVENT_TYPE_TIMER_CANCELED:
        state->mutable_timers()->erase(e.timer_canceled_event_attributes().timer_id());
        break;
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        state->set_signals_received(state->signals_received() + 1);
        break;
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
        state->set_cancel_requested(true);
        break;
      case api::EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        ApplySearchAttributeUpsert(
            e.upsert_workflow_search_attributes_event_attributes().search_attributes(),
            state->mutable_search_attributes());
        break;
      case api::EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
        ApplyMemoUpsert(e.workflow_properties_modified_event_attributes().upserted_memo(),
                        state->mutable_memo());
        break;
      case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
      case api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
      case api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
        pending_initiated.push_back(e.event_id());
        break;
      default:
        if (int64_t resolved = ResolvedInitiatedId(e); resolved != 0) {
          std::erase(pending_initiated, resolved);
        }
        break;
    }
  }
  if (!pending_initiated.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "at event ", count,
        " a child workflow or an external signal or cancellation (initiated by "
        "event ",
        pending_initiated.front(),
        ") is pending, and its answer would go to the old run: reset to a workflow task before "
        "it was initiated or after it was answered"));
  }
  if (state->workflow_task().started_event_id() != count) {
    return absl::InternalError(
        absl::StrCat("reset point ", count, " is not a started workflow task"));
  }
  state->set_next_event_id(count + 1);
  state->set_history_size_bytes(bytes);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Mutation>> HistoryEngine::ResetRun(
    const internal::ExecutionState& old_state, const api::History& history,
    int64_t started_event_id, const api::ResetWorkflowExecutionRequest& request,
    const std::string& new_run_id, absl::Time now) {
  internal::ExecutionState state;
  state.set_namespace_(old_state.namespace_());
  state.set_workflow_id(old_state.workflow_id());
  state.set_run_id(new_run_id);
  state.set_workflow_type(old_state.workflow_type());
  state.set_task_queue(old_state.task_queue());
  state.set_status(api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  ToProto(now, state.mutable_start_time());
  *state.mutable_workflow_task_timeout() = old_state.workflow_task_timeout();
  *state.mutable_workflow_run_timeout() = old_state.workflow_run_timeout();
  // The run timeout counts from the new run's start, as for continue-as-new.
  if (FromProto(old_state.workflow_run_timeout()) > absl::ZeroDuration()) {
    ToProto(now + FromProto(old_state.workflow_run_timeout()), state.mutable_run_expiration_time());
  }
  state.set_start_request_id(old_state.start_request_id());
  state.set_first_run_id(old_state.first_run_id());
  state.set_transient_workflow_task_retries(old_state.transient_workflow_task_retries());
  state.set_reset_request_id(request.request_id());
  state.set_reset_base_run_id(old_state.run_id());
  RETURN_IF_ERROR(ReplayState(history, started_event_id, &state));

  auto m = std::make_unique<Mutation>(state, now, task_ids_.get());
  // The copy keeps its events' ids, times and task ids: a reader cannot tell it from the old
  // run's history up to the point.
  for (int i = 0; i < started_event_id; ++i) {
    const api::HistoryEvent& event = history.events(i);
    m->Put(Table::kHistory, keys::HistoryEvent(new_run_id, event.event_id()),
           event.SerializeAsString());
  }

  const internal::WorkflowTaskInfo wt = m->state().workflow_task();
  auto* failed = m->Append(api::EVENT_TYPE_WORKFLOW_TASK_FAILED)
                     ->mutable_workflow_task_failed_event_attributes();
  failed->set_scheduled_event_id(wt.scheduled_event_id());
  failed->set_started_event_id(wt.started_event_id());
  failed->set_cause(api::WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW);
  failed->mutable_failure()->set_message(
      absl::StrCat("reset from run ", old_state.run_id(), ": ", request.reason())
          .substr(0, limits::kMaxFailureMessageBytes));
  failed->set_identity(request.identity());
  failed->set_base_run_id(old_state.run_id());
  failed->set_new_run_id(new_run_id);
  m->state().clear_workflow_task();

  // An activity the workflow asked to cancel and that is now running nowhere: cancelled at once
  // (as a cancel command does for an activity not started). The others are dispatched again,
  // from their first attempt.
  std::vector<int64_t> canceled;
  for (auto& [scheduled_id, info] : *m->state().mutable_activities()) {
    if (info.cancel_requested()) {
      canceled.push_back(scheduled_id);
      continue;
    }
    ToProto(now, info.mutable_current_attempt_scheduled_time());
    ASSIGN_OR_RETURN(int64_t task_id,
                     m->AddTask(keys::TaskKind::kActivity, info.task_queue(), scheduled_id, 1));
    info.set_task_id(task_id);
  }
  std::sort(canceled.begin(), canceled.end());  // events in scheduling order, not the map's
  for (int64_t scheduled_id : canceled) {
    const int64_t requested = m->state().activities().at(scheduled_id).cancel_requested_event_id();
    m->state().mutable_activities()->erase(scheduled_id);
    auto* e = m->Append(api::EVENT_TYPE_ACTIVITY_TASK_CANCELED)
                  ->mutable_activity_task_canceled_event_attributes();
    e->set_scheduled_event_id(scheduled_id);
    e->set_latest_cancel_requested_event_id(requested);
  }
  // Each activity's timeouts, counted from now (a separate loop: AddTimer's key is read back).
  for (auto& [scheduled_id, info] : *m->state().mutable_activities()) {
    const absl::Duration schedule_to_start = FromProto(info.schedule_to_start_timeout());
    if (schedule_to_start > absl::ZeroDuration()) {
      RETURN_IF_ERROR(m->AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                                  now + schedule_to_start, scheduled_id, 1,
                                  api::TIMEOUT_TYPE_SCHEDULE_TO_START)
                          .status());
      info.set_schedule_to_start_timer_key(m->last_timer_key());
    }
    const absl::Duration schedule_to_close = FromProto(info.schedule_to_close_timeout());
    if (schedule_to_close > absl::ZeroDuration()) {
      RETURN_IF_ERROR(m->AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                                  now + schedule_to_close, scheduled_id, 0,
                                  api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE)
                          .status());
      info.set_schedule_to_close_timer_key(m->last_timer_key());
    }
  }
  // User timers keep their fire time (one already past fires at once).
  for (auto& [timer_id, timer] : *m->state().mutable_timers()) {
    const absl::Time fire_time = std::max(FromProto(timer.fire_time()), now);
    ASSIGN_OR_RETURN(int64_t task_id, m->AddTimer(internal::TIMER_TASK_TYPE_USER_TIMER, fire_time,
                                                  timer.started_event_id(), 0,
                                                  api::TIMEOUT_TYPE_UNSPECIFIED, timer_id));
    timer.set_task_id(task_id);
    ToProto(fire_time, timer.mutable_fire_time());
  }

  // The signals the old run received after the point, in the order it received them: those in
  // its history, then those still buffered behind its running workflow task.
  std::vector<const api::HistoryEvent*> signals;
  for (int i = static_cast<int>(started_event_id);
       i < history.events_size() && !request.exclude_signals(); ++i) {
    if (history.events(i).event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) {
      signals.push_back(&history.events(i));
    }
  }
  for (const api::HistoryEvent& buffered : old_state.buffered_events()) {
    if (buffered.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED &&
        !request.exclude_signals()) {
      signals.push_back(&buffered);
    }
  }
  for (const api::HistoryEvent* signal : signals) {
    *m->Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
         ->mutable_workflow_execution_signaled_event_attributes() =
        signal->workflow_execution_signaled_event_attributes();
    m->state().set_signals_received(m->state().signals_received() + 1);
  }
  RETURN_IF_ERROR(m->ScheduleWorkflowTask());
  if (IsSet(m->state().run_expiration_time())) {
    RETURN_IF_ERROR(m->AddTimer(internal::TIMER_TASK_TYPE_WORKFLOW_RUN_TIMEOUT,
                                FromProto(m->state().run_expiration_time()), 0, 0)
                        .status());
    m->state().set_run_timeout_timer_key(m->last_timer_key());
  }
  m->TouchVisibility();
  return m;
}

absl::StatusOr<api::ResetWorkflowExecutionResponse> HistoryEngine::ResetWorkflowExecution(
    const api::ResetWorkflowExecutionRequest& request) {
  const std::string ns = Namespace(request.namespace_());
  const std::string& workflow_id = request.workflow_execution().workflow_id();
  const std::string& request_id = request.request_id();
  // Starts of this workflow id wait: the current pointer is checked and moved atomically.
  fiber::MutexLock stripe(&start_stripes_[absl::HashOf(ns, workflow_id) % kStartStripes]);
  api::ResetWorkflowExecutionResponse response;

  std::string run_id = request.workflow_execution().run_id();
  ASSIGN_OR_RETURN(std::string current_run_id, CurrentRunId(ns, workflow_id));
  if (run_id.empty()) {
    run_id = current_run_id;
  } else if (!request_id.empty()) {
    absl::StatusOr<std::optional<std::string>> done;
    {
      fiber::ParkScope park;  // Only the start stripe (a fiber::Mutex) is held: may park.
      done = store_->Get(Table::kMeta, keys::ResetRequest(run_id, request_id));
    }
    if (!done.ok()) return done.status();
    if (done->has_value()) {
      response.set_run_id(**done);  // A retried reset: same answer, nothing new.
      return response;
    }
  }
  if (run_id != current_run_id) {
    // Only one run of a workflow id is open at a time, and only the current one can be: a reset
    // of an older run may not leave the current one open beside the new run. The stripe keeps
    // the current run from changing meanwhile (it is closed, and starts wait).
    ASSIGN_OR_RETURN(auto current, LoadRun(current_run_id));
    if ((*current)->state->status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("workflow run ", run_id, " is not the current run of ", workflow_id,
                       ", and the current run ", current_run_id,
                       " is open: reset the current run, or terminate it first"));
    }
  }

  api::WorkflowExecution execution;
  execution.set_workflow_id(workflow_id);
  execution.set_run_id(run_id);
  ASSIGN_OR_RETURN(auto handle, LoadExecution(ns, execution));
  const internal::ExecutionState& state = *(*handle)->state;
  if (request.workflow_execution().run_id().empty() && !request_id.empty() &&
      state.reset_request_id() == request_id) {
    response.set_run_id(state.run_id());  // A retried reset of the current run: this is its run.
    return response;
  }
  if (!state.parent_run_id().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "workflow run ", run_id, " is a child of workflow ", state.parent_workflow_id(),
        ": resetting a child run is not supported (its parent waits on this run)"));
  }
  // The whole history: the point is checked against it, and the copy and the signals after the
  // point come from it. Bounded by the history limits every run is held to.
  const int64_t last_event_id = state.next_event_id() - 1;
  ASSIGN_OR_RETURN(api::History history,
                   ReadEvents(run_id, 1, last_event_id, static_cast<size_t>(last_event_id)));
  if (history.events_size() != last_event_id) {
    return absl::DataLossError(absl::StrCat("history of run ", run_id, " has ",
                                            history.events_size(), " events, its state says ",
                                            last_event_id));
  }
  ASSIGN_OR_RETURN(int64_t started_event_id, ResolveResetPoint(request, state, history));

  const absl::Time now = clock_->Now();
  const std::string new_run_id = ids_->NewTimeOrderedUuid(now);
  ASSIGN_OR_RETURN(std::unique_ptr<Mutation> new_run,
                   ResetRun(state, history, started_event_id, request, new_run_id, now));

  Mutation old_run(state, now, task_ids_.get());
  if (state.status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    old_run.FlushBuffered();
    auto* attrs = old_run.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)
                      ->mutable_workflow_execution_terminated_event_attributes();
    attrs->set_reason(absl::StrCat("reset to run ", new_run_id, ": ", request.reason()));
    attrs->set_identity(request.identity());
    RETURN_IF_ERROR(old_run.Close(api::WORKFLOW_EXECUTION_STATUS_TERMINATED));
  }
  if (!request_id.empty()) {
    old_run.Put(Table::kMeta, keys::ResetRequest(run_id, request_id), new_run_id);
  }
  WriteBatch current_batch;
  internal::CurrentRun current;
  current.set_run_id(new_run_id);
  current_batch.Put(Table::kCurrent, keys::Current(ns, workflow_id), current.SerializeAsString());
  RETURN_IF_ERROR(Commit(*handle, old_run, &current_batch, new_run.get()));
  response.set_run_id(new_run_id);
  return response;
}

}  // namespace kiln::orchestrator
