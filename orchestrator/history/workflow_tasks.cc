// HistoryEngine: workflow tasks (started, completed with commands, failed).
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/history/retry.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {

absl::StatusOr<api::PollWorkflowTaskQueueResponse> HistoryEngine::RecordWorkflowTaskStarted(
    const QueuedTask& task, const std::string& identity, const std::string& poll_request_id,
    std::optional<bool> partial_history, const std::string& worker_instance_id) {
  // The answer's fields, taken under the run's lock from the state as it is after the start
  // (no copy of the whole state: it holds every pending activity's input).
  api::PollWorkflowTaskQueueResponse response;
  std::optional<api::History> recent;  // the history from the run cache, when it holds it
  int64_t from = 1;
  auto fill = [&](const internal::ExecutionState& state) {
    const auto& wt = state.workflow_task();
    internal::TaskToken token;
    token.set_namespace_(state.namespace_());
    token.set_workflow_id(state.workflow_id());
    token.set_run_id(state.run_id());
    token.set_scheduled_event_id(wt.scheduled_event_id());
    token.set_attempt(wt.attempt());
    token.set_kind("w");
    token.set_poll_request_id(wt.started_request_id());
    token.set_task_queue(state.task_queue());
    response.set_task_token(task_tokens_.Encode(token));
    response.mutable_workflow_execution()->set_workflow_id(state.workflow_id());
    response.mutable_workflow_execution()->set_run_id(state.run_id());
    response.mutable_workflow_type()->set_name(state.workflow_type());
    response.set_previous_started_event_id(state.last_completed_workflow_task_started_event_id());
    response.set_started_event_id(wt.started_event_id());
    response.set_attempt(wt.attempt());
    *response.mutable_scheduled_time() = wt.scheduled_time();
    *response.mutable_started_time() = wt.started_time();
  };
  {
    ASSIGN_OR_RETURN(auto handle, LoadRun(task.record.run_id()));
    const internal::ExecutionState& current = *(*handle)->state;
    if (current.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
      return absl::NotFoundError(absl::StrCat("workflow run ", current.run_id(), " is closed"));
    }
    const auto& wt = current.workflow_task();
    if (wt.scheduled_event_id() != task.record.scheduled_event_id() ||
        wt.attempt() != task.record.attempt()) {
      return absl::FailedPreconditionError("workflow task is no longer pending");
    }
    // Unless asked: the worker that completed the previous task keeps the run (sticky), so it
    // needs only what followed.
    if (!partial_history.has_value()) {
      partial_history =
          !worker_instance_id.empty() && current.sticky_worker() == worker_instance_id;
    }
    if (wt.started_event_id() != 0) {
      if (wt.started_request_id() != poll_request_id) {
        return absl::FailedPreconditionError("workflow task already started");
      }
      fill(current);  // The same poll, retried: answer again.
    } else {
      Mutation m(current, clock_->Now(), task_ids_.get());
      RETURN_IF_ERROR(
          ApplyWorkflowTaskStarted(m, task.task_id, task.queue, identity, poll_request_id));
      RETURN_IF_ERROR(Commit(*handle, m));
      fill(*(*handle)->state);
    }
    // A worker holding the run gets only what came after its previous task.
    if (*partial_history) from = response.previous_started_event_id() + 1;
    recent = cache_.Recent(**handle, from, response.started_event_id());
  }

  // Otherwise read outside the run's lock: the events up to the started event never change.
  if (!recent.has_value()) {
    ASSIGN_OR_RETURN(recent, ReadEvents(response.workflow_execution().run_id(), from,
                                        response.started_event_id(),
                                        static_cast<size_t>(limits::kMaxHistoryPageSize)));
  }
  api::History history = std::move(*recent);
  const int64_t next = from + history.events_size();
  *response.mutable_history() = std::move(history);
  if (next <= response.started_event_id()) {
    response.set_next_page_token(HistoryPageToken(next));
  }
  return response;
}

absl::Status HistoryEngine::ApplyWorkflowTaskStarted(Mutation& m, int64_t backlog_task_id,
                                                     const std::string& queue,
                                                     const std::string& identity,
                                                     const std::string& request_id) {
  const absl::Time now = m.now();
  auto* mwt = m.state().mutable_workflow_task();
  auto* started = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_STARTED)
                      ->mutable_workflow_task_started_event_attributes();
  started->set_scheduled_event_id(mwt->scheduled_event_id());
  started->set_identity(identity);
  started->set_request_id(request_id);
  mwt->set_started_event_id(m.state().next_event_id() - 1);
  ToProto(now, mwt->mutable_started_time());
  mwt->set_started_request_id(request_id);
  mwt->set_identity(identity);
  mwt->set_task_id(0);
  m.DeleteTask(keys::TaskKind::kWorkflow, queue, backlog_task_id);
  RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_WORKFLOW_TASK_TIMEOUT,
                             now + FromProto(m.state().workflow_task_timeout()),
                             mwt->scheduled_event_id(), mwt->attempt(),
                             api::TIMEOUT_TYPE_START_TO_CLOSE)
                      .status());
  mwt->set_timeout_timer_key(m.last_timer_key());
  return absl::OkStatus();
}

absl::StatusOr<internal::TaskToken> HistoryEngine::CheckWorkflowToken(Handle& handle,
                                                                      const std::string& bytes) {
  ASSIGN_OR_RETURN(internal::TaskToken token, task_tokens_.Decode(bytes));
  const internal::ExecutionState& state = *handle->state;
  if (token.kind() != "w") return absl::InvalidArgumentError("task_token: not a workflow task");
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::NotFoundError(absl::StrCat("workflow run ", state.run_id(), " is closed"));
  }
  const auto& wt = state.workflow_task();
  if (wt.scheduled_event_id() != token.scheduled_event_id() || wt.attempt() != token.attempt() ||
      wt.started_event_id() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("workflow task (scheduled event ", token.scheduled_event_id(), ", attempt ",
                     token.attempt(), ") of run ", state.run_id(), " is no longer running"));
  }
  if (wt.started_request_id() != token.poll_request_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("workflow task (scheduled event ", token.scheduled_event_id(), ", attempt ",
                     token.attempt(), ") of run ", state.run_id(),
                     " was started by another poll: its task token is not this one"));
  }
  return token;
}

absl::Status HistoryEngine::FailWorkflowTask(Handle& handle, const internal::ExecutionState& state,
                                             api::WorkflowTaskFailedCause cause,
                                             const std::string& message,
                                             const std::string& identity) {
  Mutation m(state, clock_->Now(), task_ids_.get());
  const auto& wt = state.workflow_task();
  auto* failed = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_FAILED)
                     ->mutable_workflow_task_failed_event_attributes();
  failed->set_scheduled_event_id(wt.scheduled_event_id());
  failed->set_started_event_id(wt.started_event_id());
  failed->set_cause(cause);
  failed->mutable_failure()->set_message(message.substr(0, limits::kMaxFailureMessageBytes));
  failed->set_identity(identity);
  m.state().clear_workflow_task();
  m.state().clear_sticky_worker();  // a failed task's worker drops the run
  m.FlushBuffered();
  RETURN_IF_ERROR(m.ScheduleWorkflowTask(wt.attempt() + 1));
  return Commit(handle, m);
}

absl::StatusOr<api::RespondWorkflowTaskCompletedResponse>
HistoryEngine::RespondWorkflowTaskCompleted(
    const api::RespondWorkflowTaskCompletedRequest& request) {
  ASSIGN_OR_RETURN(internal::TaskToken token, task_tokens_.Decode(request.task_token()));
  ASSIGN_OR_RETURN(auto handle, LoadRun(token.run_id()));
  RETURN_IF_ERROR(CheckWorkflowToken(*handle, request.task_token()).status());
  // The cached state stays as it is until Commit replaces it: no copy needed.
  const internal::ExecutionState& state = *(*handle)->state;

  bool closes = false;
  for (const auto& command : request.commands()) {
    switch (command.command_type()) {
      case api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION:
      case api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION:
      case api::COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION:
      case api::COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION:
        closes = true;
        break;
      default:
        break;
    }
  }
  if (closes && state.buffered_events_size() > 0) {
    // The workflow decided to close without having seen events that arrived meanwhile: it
    // must see them first.
    RETURN_IF_ERROR(
        FailWorkflowTask(*handle, state, api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                         "new events arrived while the workflow task ran", request.identity()));
    return api::RespondWorkflowTaskCompletedResponse();
  }

  Mutation m(state, clock_->Now(), task_ids_.get());
  api::WorkflowTaskFailedCause cause = api::WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED;
  bool bad_command = false;
  api::RespondWorkflowTaskCompletedResponse response;
  absl::Status completed =
      CompleteWorkflowTask(*handle, m, request, &bad_command, &cause, &response);
  if (bad_command) {
    // A bad command fails the task (recorded) and the worker hears why. Nothing was committed:
    // `state` is still the run's.
    RETURN_IF_ERROR(FailWorkflowTask(*handle, state, cause, std::string(completed.message()),
                                     request.identity()));
  }
  RETURN_IF_ERROR(completed);
  return response;
}

absl::Status HistoryEngine::CompleteWorkflowTask(
    Handle& handle, Mutation& m, const api::RespondWorkflowTaskCompletedRequest& request,
    bool* bad_command, api::WorkflowTaskFailedCause* cause,
    api::RespondWorkflowTaskCompletedResponse* response, WriteBatch* also) {
  const int64_t scheduled_event_id = m.state().workflow_task().scheduled_event_id();
  const int64_t started_event_id = m.state().workflow_task().started_event_id();
  auto* completed = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
                        ->mutable_workflow_task_completed_event_attributes();
  completed->set_scheduled_event_id(scheduled_event_id);
  completed->set_started_event_id(started_event_id);
  completed->set_identity(request.identity());
  completed->set_binary_checksum(request.binary_checksum());
  int64_t completed_event_id = m.state().next_event_id() - 1;
  m.state().clear_workflow_task();
  m.state().set_last_completed_workflow_task_started_event_id(started_event_id);
  m.state().set_sticky_worker(request.sticky_worker());

  std::unique_ptr<Mutation> new_run;  // continue-as-new: the next run, in the same batch
  WriteBatch extra;
  absl::Status applied = ApplyCommands(m, request, completed_event_id, cause, &new_run, &extra);
  if (!applied.ok()) {
    *bad_command = absl::IsInvalidArgument(applied) || absl::IsResourceExhausted(applied);
    return applied;
  }
  std::vector<int64_t> eager;  // scheduled event ids of the activities started for the caller
  if (m.IsOpen()) {
    bool had_buffered = m.state().buffered_events_size() > 0;
    m.FlushBuffered();
    if (had_buffered) RETURN_IF_ERROR(m.ScheduleWorkflowTask());
    RETURN_IF_ERROR(StartEagerActivities(m, request, &eager));
  }
  if (also != nullptr) extra.Append(std::move(*also));
  RETURN_IF_ERROR(Commit(handle, m, &extra, new_run.get()));
  if (request.return_new_events() && !m.closed_now()) {
    // As recorded, from the run cache's tail (which kept them unless they are too large: the
    // worker then gets none and waits for the next task's history).
    std::optional<api::History> recorded =
        cache_.Recent(*handle, completed_event_id, handle->state->next_event_id() - 1);
    if (recorded.has_value()) response->mutable_new_events()->Swap(recorded->mutable_events());
  }
  for (int64_t scheduled : eager) {
    *response->add_activity_tasks() = BuildActivityTask(*handle->state, scheduled);
  }
  if (m.closed_now()) {
    const int64_t close_event_id = handle->state->close_event_id();
    for (const api::HistoryEvent& event : m.new_events()) {
      if (event.event_id() == close_event_id) *response->mutable_closed_event() = event;
    }
  }
  return absl::OkStatus();
}

absl::Status HistoryEngine::StartEagerActivities(
    Mutation& m, const api::RespondWorkflowTaskCompletedRequest& request,
    std::vector<int64_t>* eager) {
  absl::flat_hash_set<std::string> wanted;
  for (const api::Command& command : request.commands()) {
    if (command.command_type() == api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK &&
        command.schedule_activity_task_command_attributes().request_eager_execution() &&
        wanted.size() < limits::kMaxEagerActivitiesPerTask) {
      wanted.insert(command.schedule_activity_task_command_attributes().activity_id());
    }
  }
  if (wanted.empty()) return absl::OkStatus();
  for (QueuedTask& task : m.new_tasks()) {
    // Only on the workflow's own queue: the worker that asked serves it.
    if (task.kind != keys::TaskKind::kActivity || task.queue != m.state().task_queue() ||
        !task.started_request_id.empty()) {
      continue;
    }
    int64_t scheduled_event_id = task.record.scheduled_event_id();
    auto it = m.state().activities().find(scheduled_event_id);
    if (it == m.state().activities().end() || !wanted.contains(it->second.activity_id())) {
      continue;
    }
    RETURN_IF_ERROR(StartNewTask(m, task, request.identity()));
    eager->push_back(scheduled_event_id);
  }
  return absl::OkStatus();
}

absl::Status HistoryEngine::RespondWorkflowTaskFailed(
    const api::RespondWorkflowTaskFailedRequest& request) {
  ASSIGN_OR_RETURN(internal::TaskToken token, task_tokens_.Decode(request.task_token()));
  ASSIGN_OR_RETURN(auto handle, LoadRun(token.run_id()));
  RETURN_IF_ERROR(CheckWorkflowToken(*handle, request.task_token()).status());
  const internal::ExecutionState state = *(*handle)->state;
  Mutation m(state, clock_->Now(), task_ids_.get());
  const auto& wt = state.workflow_task();
  auto* failed = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_FAILED)
                     ->mutable_workflow_task_failed_event_attributes();
  failed->set_scheduled_event_id(wt.scheduled_event_id());
  failed->set_started_event_id(wt.started_event_id());
  failed->set_cause(request.cause());
  *failed->mutable_failure() = request.failure();
  failed->set_identity(request.identity());
  m.state().clear_workflow_task();
  m.FlushBuffered();
  RETURN_IF_ERROR(m.ScheduleWorkflowTask(wt.attempt() + 1));
  return Commit(*handle, m);
}

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
  absl::Time now = m.now();
  auto& state = m.state();
  for (int i = 0; i < request.commands_size(); ++i) {
    const api::Command& command = request.commands(i);
    auto bad = [&](api::WorkflowTaskFailedCause c, const std::string& why) {
      *cause = c;
      return absl::InvalidArgumentError(absl::StrCat("command ", i, ": ", why));
    };
    if (!m.IsOpen()) {
      return bad(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                 "commands after the workflow closed");
    }
    switch (command.command_type()) {
      case api::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK: {
        constexpr auto kBad = api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES;
        if (!command.has_schedule_activity_task_command_attributes()) {
          return bad(kBad, "schedule activity without attributes");
        }
        const auto& a = command.schedule_activity_task_command_attributes();
        if (a.activity_id().empty() || a.activity_id().size() > limits::kMaxIdLength) {
          return bad(kBad, "activity_id must be 1..1000 bytes");
        }
        if (a.activity_type().name().empty()) return bad(kBad, "activity_type is empty");
        for (const auto& [id, existing] : state.activities()) {
          if (existing.activity_id() == a.activity_id()) {
            return bad(kBad,
                       absl::StrCat("activity id '", a.activity_id(), "' is already pending"));
          }
        }
        if (static_cast<size_t>(state.activities_size()) >= limits::kMaxPendingActivities) {
          *cause = api::WORKFLOW_TASK_FAILED_CAUSE_PENDING_ACTIVITIES_LIMIT_EXCEEDED;
          return absl::ResourceExhaustedError(absl::StrCat("command ", i, ": run has ",
                                                           limits::kMaxPendingActivities,
                                                           " pending activities (limit)"));
        }
        if (a.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
          return bad(kBad,
                     absl::StrCat("activity input exceeds ", limits::kMaxPayloadBytes, " bytes"));
        }
        absl::Duration schedule_to_close = FromProto(a.schedule_to_close_timeout());
        absl::Duration start_to_close = FromProto(a.start_to_close_timeout());
        absl::Duration schedule_to_start = FromProto(a.schedule_to_start_timeout());
        absl::Duration heartbeat = FromProto(a.heartbeat_timeout());
        if (schedule_to_close < absl::ZeroDuration() || start_to_close < absl::ZeroDuration() ||
            schedule_to_start < absl::ZeroDuration() || heartbeat < absl::ZeroDuration()) {
          return bad(kBad, "timeouts must not be negative");
        }
        if (schedule_to_close == absl::ZeroDuration() && start_to_close == absl::ZeroDuration()) {
          return bad(kBad, "set start_to_close_timeout or schedule_to_close_timeout");
        }
        if (start_to_close == absl::ZeroDuration()) start_to_close = schedule_to_close;
        if (schedule_to_close > absl::ZeroDuration()) {
          start_to_close = std::min(start_to_close, schedule_to_close);
          if (schedule_to_start > schedule_to_close) schedule_to_start = schedule_to_close;
        }
        api::RetryPolicy policy = a.retry_policy();
        if (absl::Status s = NormalizeRetryPolicy(&policy); !s.ok()) {
          return bad(kBad, std::string(s.message()));
        }

        api::HistoryEvent* event = m.Append(api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
        auto* attrs = event->mutable_activity_task_scheduled_event_attributes();
        attrs->set_activity_id(a.activity_id());
        *attrs->mutable_activity_type() = a.activity_type();
        std::string queue =
            a.task_queue().name().empty() ? state.task_queue() : a.task_queue().name();
        attrs->mutable_task_queue()->set_name(queue);
        *attrs->mutable_header() = a.header();
        *attrs->mutable_input() = a.input();
        *attrs->mutable_schedule_to_close_timeout() = a.schedule_to_close_timeout();
        ToProto(schedule_to_start, attrs->mutable_schedule_to_start_timeout());
        ToProto(start_to_close, attrs->mutable_start_to_close_timeout());
        *attrs->mutable_heartbeat_timeout() = a.heartbeat_timeout();
        attrs->set_workflow_task_completed_event_id(completed_event_id);
        *attrs->mutable_retry_policy() = policy;

        int64_t scheduled_id = event->event_id();
        internal::ActivityInfo& info = (*state.mutable_activities())[scheduled_id];
        info.set_scheduled_event_id(scheduled_id);
        info.set_activity_id(a.activity_id());
        info.set_activity_type(a.activity_type().name());
        info.set_task_queue(queue);
        *info.mutable_input() = a.input();
        *info.mutable_header() = a.header();
        *info.mutable_schedule_to_close_timeout() = a.schedule_to_close_timeout();
        ToProto(schedule_to_start, info.mutable_schedule_to_start_timeout());
        ToProto(start_to_close, info.mutable_start_to_close_timeout());
        *info.mutable_heartbeat_timeout() = a.heartbeat_timeout();
        *info.mutable_retry_policy() = policy;
        info.set_attempt(1);
        ToProto(now, info.mutable_scheduled_time());
        ToProto(now, info.mutable_current_attempt_scheduled_time());
        ASSIGN_OR_RETURN(int64_t task_id,
                         m.AddTask(keys::TaskKind::kActivity, queue, scheduled_id, 1));
        info.set_task_id(task_id);
        if (schedule_to_start > absl::ZeroDuration()) {
          RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                                     now + schedule_to_start, scheduled_id, 1,
                                     api::TIMEOUT_TYPE_SCHEDULE_TO_START)
                              .status());
          info.set_schedule_to_start_timer_key(m.last_timer_key());
        }
        if (schedule_to_close > absl::ZeroDuration()) {
          RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                                     now + schedule_to_close, scheduled_id, 0,
                                     api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE)
                              .status());
          info.set_schedule_to_close_timer_key(m.last_timer_key());
        }
        break;
      }
      case api::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK: {
        constexpr auto kBad = api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND;
        int64_t scheduled_id =
            command.request_cancel_activity_task_command_attributes().scheduled_event_id();
        auto it = state.mutable_activities()->find(scheduled_id);
        if (it == state.mutable_activities()->end()) {
          return bad(kBad, absl::StrCat("no pending activity scheduled by event ", scheduled_id));
        }
        auto* requested = m.Append(api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
                              ->mutable_activity_task_cancel_requested_event_attributes();
        requested->set_scheduled_event_id(scheduled_id);
        requested->set_workflow_task_completed_event_id(completed_event_id);
        int64_t requested_id = m.state().next_event_id() - 1;
        internal::ActivityInfo& info = it->second;
        if (!IsSet(info.started_time())) {
          // Not running anywhere: cancelled at once.
          m.DeleteTask(keys::TaskKind::kActivity, info.task_queue(), info.task_id());
          auto* canceled = m.Append(api::EVENT_TYPE_ACTIVITY_TASK_CANCELED)
                               ->mutable_activity_task_canceled_event_attributes();
          canceled->set_scheduled_event_id(scheduled_id);
          canceled->set_latest_cancel_requested_event_id(requested_id);
          state.mutable_activities()->erase(it);
        } else {
          // The worker hears it in its next heartbeat answer.
          info.set_cancel_requested(true);
          info.set_cancel_requested_event_id(requested_id);
        }
        break;
      }
      case api::COMMAND_TYPE_START_TIMER: {
        constexpr auto kBad = api::WORKFLOW_TASK_FAILED_CAUSE_BAD_START_TIMER_ATTRIBUTES;
        const auto& a = command.start_timer_command_attributes();
        if (a.timer_id().empty() || a.timer_id().size() > limits::kMaxIdLength) {
          return bad(kBad, "timer_id must be 1..1000 bytes");
        }
        if (state.timers().contains(a.timer_id())) {
          return bad(kBad, absl::StrCat("timer id '", a.timer_id(), "' is already pending"));
        }
        if (static_cast<size_t>(state.timers_size()) >= limits::kMaxPendingTimers) {
          return bad(
              kBad, absl::StrCat("run has ", limits::kMaxPendingTimers, " pending timers (limit)"));
        }
        absl::Duration fire_after = FromProto(a.start_to_fire_timeout());
        if (fire_after <= absl::ZeroDuration())
          return bad(kBad, "start_to_fire_timeout must be positive");
        auto* started =
            m.Append(api::EVENT_TYPE_TIMER_STARTED)->mutable_timer_started_event_attributes();
        started->set_timer_id(a.timer_id());
        *started->mutable_start_to_fire_timeout() = a.start_to_fire_timeout();
        started->set_workflow_task_completed_event_id(completed_event_id);
        int64_t started_id = m.state().next_event_id() - 1;
        ASSIGN_OR_RETURN(int64_t task_id,
                         m.AddTimer(internal::TIMER_TASK_TYPE_USER_TIMER, now + fire_after,
                                    started_id, 0, api::TIMEOUT_TYPE_UNSPECIFIED, a.timer_id()));
        internal::TimerInfo& timer = (*state.mutable_timers())[a.timer_id()];
        timer.set_timer_id(a.timer_id());
        timer.set_started_event_id(started_id);
        ToProto(now + fire_after, timer.mutable_fire_time());
        timer.set_task_id(task_id);
        break;
      }
      case api::COMMAND_TYPE_CANCEL_TIMER: {
        constexpr auto kBad = api::WORKFLOW_TASK_FAILED_CAUSE_BAD_CANCEL_TIMER_ATTRIBUTES;
        const std::string& timer_id = command.cancel_timer_command_attributes().timer_id();
        auto it = state.mutable_timers()->find(timer_id);
        if (it == state.mutable_timers()->end()) {
          return bad(kBad, absl::StrCat("no pending timer '", timer_id, "'"));
        }
        m.Delete(Table::kTimers,
                 keys::Timer(FromProto(it->second.fire_time()), it->second.task_id()));
        auto* canceled =
            m.Append(api::EVENT_TYPE_TIMER_CANCELED)->mutable_timer_canceled_event_attributes();
        canceled->set_timer_id(timer_id);
        canceled->set_started_event_id(it->second.started_event_id());
        canceled->set_workflow_task_completed_event_id(completed_event_id);
        canceled->set_identity(request.identity());
        state.mutable_timers()->erase(it);
        break;
      }
      case api::COMMAND_TYPE_RECORD_MARKER: {
        const auto& a = command.record_marker_command_attributes();
        if (a.marker_name().empty()) {
          return bad(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, "marker_name is empty");
        }
        auto* marker =
            m.Append(api::EVENT_TYPE_MARKER_RECORDED)->mutable_marker_recorded_event_attributes();
        marker->set_marker_name(a.marker_name());
        *marker->mutable_details() = a.details();
        *marker->mutable_header() = a.header();
        *marker->mutable_failure() = a.failure();
        marker->set_workflow_task_completed_event_id(completed_event_id);
        break;
      }
      case api::COMMAND_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: {
        const auto& a = command.upsert_workflow_search_attributes_command_attributes();
        if (absl::Status valid = ValidateSearchAttributes(a.search_attributes()); !valid.ok()) {
          return bad(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                     std::string(valid.message()));
        }
        auto* upsert = m.Append(api::EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
                           ->mutable_upsert_workflow_search_attributes_event_attributes();
        upsert->set_workflow_task_completed_event_id(completed_event_id);
        *upsert->mutable_search_attributes() = a.search_attributes();
        for (const auto& [key, value] : a.search_attributes().indexed_fields()) {
          (*state.mutable_search_attributes()->mutable_indexed_fields())[key] = value;
        }
        m.TouchVisibility();
        break;
      }
      case api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION: {
        const auto& a = command.complete_workflow_execution_command_attributes();
        if (a.result().ByteSizeLong() > limits::kMaxPayloadBytes) {
          return bad(api::WORKFLOW_TASK_FAILED_CAUSE_BAD_COMPLETE_WORKFLOW_EXECUTION_ATTRIBUTES,
                     absl::StrCat("result exceeds ", limits::kMaxPayloadBytes, " bytes"));
        }
        auto* done = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
                         ->mutable_workflow_execution_completed_event_attributes();
        *done->mutable_result() = a.result();
        done->set_workflow_task_completed_event_id(completed_event_id);
        RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_COMPLETED));
        break;
      }
      case api::COMMAND_TYPE_FAIL_WORKFLOW_EXECUTION: {
        auto* failed = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)
                           ->mutable_workflow_execution_failed_event_attributes();
        *failed->mutable_failure() = command.fail_workflow_execution_command_attributes().failure();
        failed->set_retry_state(api::RETRY_STATE_RETRY_POLICY_NOT_SET);
        failed->set_workflow_task_completed_event_id(completed_event_id);
        RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_FAILED));
        break;
      }
      case api::COMMAND_TYPE_CANCEL_WORKFLOW_EXECUTION: {
        auto* canceled = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED)
                             ->mutable_workflow_execution_canceled_event_attributes();
        *canceled->mutable_details() =
            command.cancel_workflow_execution_command_attributes().details();
        canceled->set_workflow_task_completed_event_id(completed_event_id);
        RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_CANCELED));
        break;
      }
      case api::COMMAND_TYPE_CONTINUE_AS_NEW_WORKFLOW_EXECUTION: {
        const auto& a = command.continue_as_new_workflow_execution_command_attributes();
        if (a.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
          return bad(
              api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
              absl::StrCat("continue-as-new input exceeds ", limits::kMaxPayloadBytes, " bytes"));
        }
        RETURN_IF_ERROR(ContinueAsNew(m, a, completed_event_id, new_run, extra));
        break;
      }
      case api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION: {
        const auto& a = command.start_child_workflow_execution_command_attributes();
        constexpr auto kBad = api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND;
        if (a.workflow_id().empty() || a.workflow_id().size() > limits::kMaxIdLength ||
            a.workflow_id().find('\0') != std::string::npos) {
          return bad(kBad, "child workflow_id must be 1..1000 bytes without NUL");
        }
        if (a.workflow_type().name().empty()) return bad(kBad, "child workflow_type is empty");
        if (a.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
          return bad(kBad,
                     absl::StrCat("child input exceeds ", limits::kMaxPayloadBytes, " bytes"));
        }
        if (static_cast<size_t>(state.children_size()) >= limits::kMaxPendingActivities) {
          return bad(kBad, absl::StrCat("run has ", limits::kMaxPendingActivities,
                                        " pending children (limit)"));
        }
        auto* event = m.Append(api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED);
        auto* e = event->mutable_start_child_workflow_execution_initiated_event_attributes();
        e->set_namespace_(a.namespace_().empty() ? state.namespace_() : a.namespace_());
        e->set_workflow_id(a.workflow_id());
        *e->mutable_workflow_type() = a.workflow_type();
        e->mutable_task_queue()->set_name(a.task_queue().name().empty() ? state.task_queue()
                                                                        : a.task_queue().name());
        *e->mutable_input() = a.input();
        *e->mutable_workflow_execution_timeout() = a.workflow_execution_timeout();
        *e->mutable_workflow_run_timeout() = a.workflow_run_timeout();
        *e->mutable_workflow_task_timeout() = a.workflow_task_timeout();
        e->set_parent_close_policy(a.parent_close_policy());
        e->set_workflow_task_completed_event_id(completed_event_id);
        e->set_workflow_id_reuse_policy(a.workflow_id_reuse_policy());
        *e->mutable_header() = a.header();
        *e->mutable_memo() = a.memo();
        *e->mutable_search_attributes() = a.search_attributes();
        internal::ChildInfo& child = (*state.mutable_children())[event->event_id()];
        child.set_namespace_(e->namespace_());
        child.set_workflow_id(a.workflow_id());
        child.set_workflow_type(a.workflow_type().name());
        child.set_parent_close_policy(a.parent_close_policy() ==
                                              api::PARENT_CLOSE_POLICY_UNSPECIFIED
                                          ? api::PARENT_CLOSE_POLICY_TERMINATE
                                          : a.parent_close_policy());
        child.set_initiated_event_id(event->event_id());
        RETURN_IF_ERROR(
            m.AddTransfer(internal::TIMER_TASK_TYPE_START_CHILD, event->event_id()).status());
        break;
      }
      case api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION:
      case api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION: {
        bool signal =
            command.command_type() == api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION;
        internal::ExternalRequest request_info;
        api::HistoryEvent* event;
        if (signal) {
          const auto& a = command.signal_external_workflow_execution_command_attributes();
          if (a.execution().workflow_id().empty() || a.signal_name().empty()) {
            return bad(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                       "signal external needs a workflow id and a signal name");
          }
          event = m.Append(api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED);
          auto* e = event->mutable_signal_external_workflow_execution_initiated_event_attributes();
          e->set_workflow_task_completed_event_id(completed_event_id);
          e->set_namespace_(a.namespace_().empty() ? state.namespace_() : a.namespace_());
          *e->mutable_workflow_execution() = a.execution();
          e->set_signal_name(a.signal_name());
          *e->mutable_input() = a.input();
          e->set_control(a.control());
          e->set_child_workflow_only(a.child_workflow_only());
          request_info.set_namespace_(e->namespace_());
          request_info.set_workflow_id(a.execution().workflow_id());
          request_info.set_run_id(a.execution().run_id());
          request_info.set_kind("signal");
          request_info.set_signal_name(a.signal_name());
          *request_info.mutable_input() = a.input();
          request_info.set_control(a.control());
        } else {
          const auto& a = command.request_cancel_external_workflow_execution_command_attributes();
          if (a.workflow_id().empty()) {
            return bad(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                       "cancel external needs a workflow id");
          }
          event = m.Append(api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED);
          auto* e =
              event
                  ->mutable_request_cancel_external_workflow_execution_initiated_event_attributes();
          e->set_workflow_task_completed_event_id(completed_event_id);
          e->set_namespace_(a.namespace_().empty() ? state.namespace_() : a.namespace_());
          e->mutable_workflow_execution()->set_workflow_id(a.workflow_id());
          e->mutable_workflow_execution()->set_run_id(a.run_id());
          e->set_control(a.control());
          e->set_reason(a.reason());
          request_info.set_namespace_(e->namespace_());
          request_info.set_workflow_id(a.workflow_id());
          request_info.set_run_id(a.run_id());
          request_info.set_kind("cancel");
          request_info.set_control(a.control());
        }
        (*state.mutable_external_requests())[event->event_id()] = request_info;
        RETURN_IF_ERROR(m.AddTransfer(signal ? internal::TIMER_TASK_TYPE_SIGNAL_EXTERNAL
                                             : internal::TIMER_TASK_TYPE_CANCEL_EXTERNAL,
                                      event->event_id())
                            .status());
        break;
      }
      default:
        return bad(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                   absl::StrCat("command type ", api::CommandType_Name(command.command_type()),
                                " is not supported"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::orchestrator
