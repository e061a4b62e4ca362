// HistoryEngine: activity tasks (started, heartbeats, completed, failed and retried, canceled).
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/history/retry.h"

namespace kiln::orchestrator {

absl::StatusOr<api::PollActivityTaskQueueResponse> HistoryEngine::RecordActivityTaskStarted(
    const QueuedTask& task, const std::string& identity, const std::string& poll_request_id) {
  ASSIGN_OR_RETURN(auto handle, LoadRun(task.record.run_id()));
  const internal::ExecutionState& current = *(*handle)->state;
  if (current.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::NotFoundError(absl::StrCat("workflow run ", current.run_id(), " is closed"));
  }
  auto it = current.activities().find(task.record.scheduled_event_id());
  if (it == current.activities().end()) {
    return absl::NotFoundError("activity is no longer pending");
  }
  const internal::ActivityInfo& existing = it->second;
  if (existing.attempt() != task.record.attempt() || existing.backing_off()) {
    return absl::FailedPreconditionError("activity attempt is no longer pending");
  }
  if (IsSet(existing.started_time()) && existing.started_request_id() != poll_request_id) {
    return absl::FailedPreconditionError("activity attempt already started");
  }
  if (!IsSet(existing.started_time())) {
    Mutation m(current, clock_->Now(), task_ids_.get());
    RETURN_IF_ERROR(ApplyActivityTaskStarted(m, task.record.scheduled_event_id(), task.task_id,
                                             task.queue, identity, poll_request_id));
    RETURN_IF_ERROR(Commit(*handle, m));
  }

  return BuildActivityTask(*(*handle)->state, task.record.scheduled_event_id());
}

api::PollActivityTaskQueueResponse HistoryEngine::BuildActivityTask(
    const internal::ExecutionState& state, int64_t scheduled_event_id) const {
  const internal::ActivityInfo& info = state.activities().at(scheduled_event_id);
  api::PollActivityTaskQueueResponse response;
  internal::TaskToken token;
  token.set_namespace_(state.namespace_());
  token.set_workflow_id(state.workflow_id());
  token.set_run_id(state.run_id());
  token.set_scheduled_event_id(info.scheduled_event_id());
  token.set_attempt(info.attempt());
  token.set_activity_id(info.activity_id());
  token.set_kind("a");
  token.set_poll_request_id(info.started_request_id());
  token.set_task_queue(info.task_queue());
  response.set_task_token(task_tokens_.Encode(token));
  response.set_workflow_namespace(state.namespace_());
  response.mutable_workflow_type()->set_name(state.workflow_type());
  response.mutable_workflow_execution()->set_workflow_id(state.workflow_id());
  response.mutable_workflow_execution()->set_run_id(state.run_id());
  response.mutable_activity_type()->set_name(info.activity_type());
  response.set_activity_id(info.activity_id());
  *response.mutable_header() = info.header();
  *response.mutable_input() = info.input();
  *response.mutable_heartbeat_details() = info.heartbeat_details();
  *response.mutable_scheduled_time() = info.scheduled_time();
  *response.mutable_current_attempt_scheduled_time() = info.current_attempt_scheduled_time();
  *response.mutable_started_time() = info.started_time();
  response.set_attempt(info.attempt());
  *response.mutable_schedule_to_close_timeout() = info.schedule_to_close_timeout();
  *response.mutable_start_to_close_timeout() = info.start_to_close_timeout();
  *response.mutable_heartbeat_timeout() = info.heartbeat_timeout();
  *response.mutable_retry_policy() = info.retry_policy();
  return response;
}

absl::Status HistoryEngine::ApplyActivityTaskStarted(Mutation& m, int64_t scheduled_event_id,
                                                     int64_t backlog_task_id,
                                                     const std::string& queue,
                                                     const std::string& identity,
                                                     const std::string& request_id) {
  const absl::Time now = m.now();
  internal::ActivityInfo& info = (*m.state().mutable_activities())[scheduled_event_id];
  ToProto(now, info.mutable_started_time());
  info.set_started_request_id(request_id);
  info.set_last_worker_identity(identity);
  info.set_task_id(0);
  info.clear_last_heartbeat_time();
  info.clear_schedule_to_start_timer_key();  // taken in time: that timer is moot
  m.DeleteTask(keys::TaskKind::kActivity, queue, backlog_task_id);
  absl::Duration start_to_close = FromProto(info.start_to_close_timeout());
  RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT, now + start_to_close,
                             info.scheduled_event_id(), info.attempt(),
                             api::TIMEOUT_TYPE_START_TO_CLOSE)
                      .status());
  info.set_start_to_close_timer_key(m.last_timer_key());
  absl::Duration heartbeat = FromProto(info.heartbeat_timeout());
  if (heartbeat > absl::ZeroDuration() && heartbeat < start_to_close) {
    RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT, now + heartbeat,
                               info.scheduled_event_id(), info.attempt(),
                               api::TIMEOUT_TYPE_HEARTBEAT)
                        .status());
    info.set_heartbeat_timer_key(m.last_timer_key());
  }
  return absl::OkStatus();
}

absl::StatusOr<internal::TaskToken> HistoryEngine::CheckActivityToken(
    Handle& handle, const std::string& bytes, internal::ActivityInfo** activity) {
  ASSIGN_OR_RETURN(internal::TaskToken token, task_tokens_.Decode(bytes));
  if (token.kind() != "a") return absl::InvalidArgumentError("task_token: not an activity task");
  internal::ExecutionState& state = *handle->state;
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::NotFoundError(absl::StrCat("workflow run ", state.run_id(), " is closed"));
  }
  auto it = state.mutable_activities()->find(token.scheduled_event_id());
  if (it == state.mutable_activities()->end()) {
    return absl::NotFoundError(absl::StrCat("activity '", token.activity_id(), "' of run ",
                                            state.run_id(), " is no longer pending"));
  }
  if (it->second.attempt() != token.attempt() || !IsSet(it->second.started_time())) {
    return absl::FailedPreconditionError(
        absl::StrCat("attempt ", token.attempt(), " of activity '", token.activity_id(),
                     "' is no longer running (current attempt ", it->second.attempt(), ")"));
  }
  if (it->second.started_request_id() != token.poll_request_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("attempt ", token.attempt(), " of activity '", token.activity_id(),
                     "' was started by another poll: its task token is not this one"));
  }
  *activity = &it->second;
  return token;
}

absl::StatusOr<bool> HistoryEngine::HasStartedActivity(const std::string& run_id,
                                                       const std::string& queue) {
  ASSIGN_OR_RETURN(auto handle, LoadRun(run_id));
  const internal::ExecutionState& state = *(*handle)->state;
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) return false;
  for (const auto& [id, activity] : state.activities()) {
    if (activity.task_queue() == queue && IsSet(activity.started_time())) return true;
  }
  return false;
}

absl::StatusOr<api::RecordActivityTaskHeartbeatResponse> HistoryEngine::RecordActivityTaskHeartbeat(
    const api::RecordActivityTaskHeartbeatRequest& request) {
  if (request.details().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat details exceed ", limits::kMaxPayloadBytes, " bytes"));
  }
  ASSIGN_OR_RETURN(internal::TaskToken token, task_tokens_.Decode(request.task_token()));
  ASSIGN_OR_RETURN(auto handle, LoadRun(token.run_id()));
  internal::ActivityInfo* activity = nullptr;
  RETURN_IF_ERROR(CheckActivityToken(*handle, request.task_token(), &activity).status());
  api::RecordActivityTaskHeartbeatResponse response;
  response.set_cancel_requested(activity->cancel_requested());
  Mutation m(*(*handle)->state, clock_->Now(), task_ids_.get());
  internal::ActivityInfo& info = (*m.state().mutable_activities())[token.scheduled_event_id()];
  ToProto(m.now(), info.mutable_last_heartbeat_time());
  if (request.has_details()) *info.mutable_heartbeat_details() = request.details();
  RETURN_IF_ERROR(Commit(*handle, m));
  return response;
}

absl::Status HistoryEngine::CloseActivity(Mutation& m, int64_t scheduled_event_id,
                                          api::EventType close,
                                          const std::function<void(api::HistoryEvent*)>& fill) {
  auto& activities = *m.state().mutable_activities();
  auto it = activities.find(scheduled_event_id);
  if (it == activities.end()) return absl::InternalError("closing an activity that is not pending");
  internal::ActivityInfo info = std::move(it->second);
  activities.erase(it);
  m.DeleteTask(keys::TaskKind::kActivity, info.task_queue(), info.task_id());
  int64_t started_event_id = 0;
  if (IsSet(info.started_time())) {
    ASSIGN_OR_RETURN(api::HistoryEvent * started,
                     m.AddWorkflowEvent(api::EVENT_TYPE_ACTIVITY_TASK_STARTED));
    auto* attrs = started->mutable_activity_task_started_event_attributes();
    attrs->set_scheduled_event_id(scheduled_event_id);
    attrs->set_identity(info.last_worker_identity());
    attrs->set_request_id(info.started_request_id());
    attrs->set_attempt(info.attempt());
    *attrs->mutable_last_failure() = info.last_failure();
    started->mutable_event_time()->Swap(info.mutable_started_time());
    started_event_id = started->event_id();  // 0 when buffered: fixed up at flush.
  }
  ASSIGN_OR_RETURN(api::HistoryEvent * event, m.AddWorkflowEvent(close));
  fill(event);
  switch (close) {
    case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED: {
      auto* a = event->mutable_activity_task_completed_event_attributes();
      a->set_scheduled_event_id(scheduled_event_id);
      a->set_started_event_id(started_event_id);
      break;
    }
    case api::EVENT_TYPE_ACTIVITY_TASK_FAILED: {
      auto* a = event->mutable_activity_task_failed_event_attributes();
      a->set_scheduled_event_id(scheduled_event_id);
      a->set_started_event_id(started_event_id);
      break;
    }
    case api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: {
      auto* a = event->mutable_activity_task_timed_out_event_attributes();
      a->set_scheduled_event_id(scheduled_event_id);
      a->set_started_event_id(started_event_id);
      break;
    }
    case api::EVENT_TYPE_ACTIVITY_TASK_CANCELED: {
      auto* a = event->mutable_activity_task_canceled_event_attributes();
      a->set_scheduled_event_id(scheduled_event_id);
      a->set_started_event_id(started_event_id);
      a->set_latest_cancel_requested_event_id(info.cancel_requested_event_id());
      break;
    }
    default:
      return absl::InternalError("not an activity close event");
  }
  return absl::OkStatus();
}

absl::Status HistoryEngine::RetryOrFailActivity(Mutation& m, internal::ActivityInfo* activity,
                                                const api::Failure& failure,
                                                api::EventType final_event,
                                                const api::Payloads* heartbeat_details) {
  absl::Time expiration = absl::InfiniteFuture();
  if (FromProto(activity->schedule_to_close_timeout()) > absl::ZeroDuration()) {
    expiration =
        FromProto(activity->scheduled_time()) + FromProto(activity->schedule_to_close_timeout());
  }
  RetryDecision decision = activity->cancel_requested()
                               ? RetryDecision{api::RETRY_STATE_CANCEL_REQUESTED, {}}
                               : DecideRetry(activity->retry_policy(), activity->attempt(), failure,
                                             m.now(), expiration);
  if (decision.state == api::RETRY_STATE_IN_PROGRESS) {
    // Retries leave no events: the attempt count and last failure live in the state and in
    // the started event written when the activity finally closes.
    int32_t next_attempt = activity->attempt() + 1;
    activity->set_attempt(next_attempt);
    *activity->mutable_last_failure() = failure;
    if (heartbeat_details != nullptr && heartbeat_details->payloads_size() > 0) {
      *activity->mutable_heartbeat_details() = *heartbeat_details;
    }
    activity->clear_started_time();
    activity->clear_started_request_id();
    activity->clear_last_heartbeat_time();
    activity->clear_start_to_close_timer_key();
    activity->clear_heartbeat_timer_key();
    activity->set_backing_off(true);
    return m
        .AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_RETRY, m.now() + decision.backoff,
                  activity->scheduled_event_id(), next_attempt)
        .status();
  }
  api::Failure final_failure = failure;
  std::string identity = activity->last_worker_identity();
  return CloseActivity(m, activity->scheduled_event_id(), final_event,
                       [&](api::HistoryEvent* event) {
                         if (final_event == api::EVENT_TYPE_ACTIVITY_TASK_FAILED) {
                           auto* a = event->mutable_activity_task_failed_event_attributes();
                           *a->mutable_failure() = final_failure;
                           a->set_retry_state(decision.state);
                           a->set_identity(identity);
                         } else {
                           auto* a = event->mutable_activity_task_timed_out_event_attributes();
                           *a->mutable_failure() = final_failure;
                           a->set_retry_state(decision.state);
                         }
                       });
}

absl::StatusOr<HistoryEngine::ActivityAnswer> HistoryEngine::AnswerActivity(
    const std::string& task_token,
    const std::function<absl::Status(Mutation&, const internal::TaskToken&)>& apply,
    const std::string& next_task_identity, const api::SpeculativeWorkflowTask* speculative) {
  ActivityAnswer answer;
  ASSIGN_OR_RETURN(internal::TaskToken token, task_tokens_.Decode(task_token));
  ASSIGN_OR_RETURN(auto handle, LoadRun(token.run_id()));
  internal::ActivityInfo* activity = nullptr;
  RETURN_IF_ERROR(CheckActivityToken(*handle, task_token, &activity).status());
  if (speculative != nullptr) {
    ASSIGN_OR_RETURN(answer.speculated,
                     RunSpeculativeTask(*handle, token, *activity, apply, *speculative));
    if (answer.speculated.has_value()) return answer;
  }
  const std::string activity_queue = activity->task_queue();
  Mutation m(*(*handle)->state, clock_->Now(), task_ids_.get());
  RETURN_IF_ERROR(apply(m, token));
  if (!next_task_identity.empty()) {
    RETURN_IF_ERROR(m.Finalize());  // Schedules the workflow task the new events need.
    QueuedTask* task = NewPendingWorkflowTask(m);
    if (task != nullptr && task->queue == activity_queue) {
      RETURN_IF_ERROR(StartNewTask(m, *task, next_task_identity));
      answer.next_task = *task;
    }
  }
  // Nothing of the run is read after: the commit may be held for the next task's answer.
  RETURN_IF_ERROR(Commit(*handle, m, nullptr, nullptr, /*may_hold=*/true));
  return answer;
}

absl::StatusOr<std::optional<api::RespondWorkflowTaskCompletedResponse>>
HistoryEngine::RunSpeculativeTask(
    Handle& handle, const internal::TaskToken& token, const internal::ActivityInfo& activity,
    const std::function<absl::Status(Mutation&, const internal::TaskToken&)>& apply,
    const api::SpeculativeWorkflowTask& speculative) {
  const internal::ExecutionState& state = *handle->state;
  // The worker's state must be level with the history, and the completion must record just
  // what it assumed: nothing since, no task pending, the task on the queue it serves.
  if (state.next_event_id() != speculative.next_event_id() ||
      state.workflow_task().scheduled_event_id() != 0 || state.buffered_events_size() > 0 ||
      activity.task_queue() != state.task_queue()) {
    return std::nullopt;
  }
  // The workflow's Now() in that task: not before the activity started (events stay in
  // order), not later than the clocks' skew allows, and not so long ago that the task would
  // have timed out.
  const absl::Time now = clock_->Now();
  const absl::Time started = FromProto(speculative.started_time());
  if (started < FromProto(activity.started_time()) ||
      started > now + limits::kMaxSpeculativeClockSkew ||
      started < now - FromProto(state.workflow_task_timeout())) {
    return std::nullopt;
  }
  const api::RespondWorkflowTaskCompletedRequest& completion = speculative.completion();
  Mutation m(state, started, task_ids_.get());
  RETURN_IF_ERROR(apply(m, token));
  RETURN_IF_ERROR(m.Finalize());  // Schedules the workflow task the completion needs.
  QueuedTask* task = NewPendingWorkflowTask(m);
  if (task == nullptr || task->queue != activity.task_queue()) return std::nullopt;
  RETURN_IF_ERROR(
      StartNewTask(m, *task, completion.identity().empty() ? "unknown" : completion.identity()));
  if (m.state().workflow_task().started_event_id() != speculative.next_event_id() + 3) {
    return std::nullopt;
  }
  bool bad_command = false;
  api::WorkflowTaskFailedCause cause = api::WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED;
  api::RespondWorkflowTaskCompletedResponse response;
  absl::Status completed =
      CompleteWorkflowTask(handle, m, completion, &bad_command, &cause, &response);
  // A bad command: the completion is recorded without the task, and the worker, given the
  // task, fails it the usual way.
  if (bad_command) return std::nullopt;
  RETURN_IF_ERROR(completed);
  return response;
}

absl::StatusOr<api::RespondActivityTaskCompletedResponse>
HistoryEngine::RespondActivityTaskCompleted(
    const api::RespondActivityTaskCompletedRequest& request) {
  if (request.result().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("activity result exceeds ", limits::kMaxPayloadBytes, " bytes"));
  }
  std::string next_identity;
  if (request.return_new_workflow_task()) {
    next_identity = request.workflow_task_identity().empty() ? request.identity()
                                                             : request.workflow_task_identity();
    if (next_identity.empty()) next_identity = "unknown";
  }
  ASSIGN_OR_RETURN(
      ActivityAnswer answer,
      AnswerActivity(
          request.task_token(),
          [&](Mutation& m, const internal::TaskToken& token) {
            return CloseActivity(
                m, token.scheduled_event_id(), api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                [&](api::HistoryEvent* event) {
                  auto* a = event->mutable_activity_task_completed_event_attributes();
                  *a->mutable_result() = request.result();
                  a->set_identity(request.identity());
                });
          },
          next_identity,
          request.has_speculative_workflow_task() ? &request.speculative_workflow_task()
                                                  : nullptr));
  api::RespondActivityTaskCompletedResponse response;
  if (answer.speculated.has_value()) {
    *response.mutable_workflow_task_completed() = std::move(*answer.speculated);
    return response;
  }
  if (answer.next_task.has_value()) {
    // Answered as a retry of the start just recorded: no new transition.
    ASSIGN_OR_RETURN(*response.mutable_workflow_task(),
                     RecordWorkflowTaskStarted(*answer.next_task, next_identity,
                                               answer.next_task->started_request_id,
                                               request.workflow_task_partial_history()));
  }
  return response;
}

absl::Status HistoryEngine::RespondActivityTaskFailed(
    const api::RespondActivityTaskFailedRequest& request) {
  auto apply = [&](Mutation& m, const internal::TaskToken& token) {
    internal::ActivityInfo* info = &(*m.state().mutable_activities())[token.scheduled_event_id()];
    api::Failure failure = request.failure();
    if (failure.message().size() > limits::kMaxFailureMessageBytes) {
      failure.mutable_message()->resize(limits::kMaxFailureMessageBytes);
    }
    return RetryOrFailActivity(m, info, failure, api::EVENT_TYPE_ACTIVITY_TASK_FAILED,
                               &request.last_heartbeat_details());
  };
  return AnswerActivity(request.task_token(), apply).status();
}

absl::Status HistoryEngine::RespondActivityTaskCanceled(
    const api::RespondActivityTaskCanceledRequest& request) {
  auto apply = [&](Mutation& m, const internal::TaskToken& token) {
    return CloseActivity(m, token.scheduled_event_id(), api::EVENT_TYPE_ACTIVITY_TASK_CANCELED,
                         [&](api::HistoryEvent* event) {
                           auto* a = event->mutable_activity_task_canceled_event_attributes();
                           *a->mutable_details() = request.details();
                           a->set_identity(request.identity());
                         });
  };
  return AnswerActivity(request.task_token(), apply).status();
}

}  // namespace kiln::orchestrator
