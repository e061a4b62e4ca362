// HistoryEngine: workflow tasks (started, completed, failed). The commands a completed task
// carries are applied in commands.cc.
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/limits.h"

namespace kiln::orchestrator {
namespace {

const std::string& WorkerIdentity(const api::RespondWorkflowTaskCompletedRequest& request) {
  static const std::string* const kUnknown = new std::string("unknown");
  return request.identity().empty() ? *kUnknown : request.identity();
}

}  // namespace

std::vector<api::HistoryEvent> TransientWorkflowTaskEvents(const internal::ExecutionState& state) {
  const auto& wt = state.workflow_task();
  if (!wt.transient() || wt.started_event_id() == 0) return {};
  std::vector<api::HistoryEvent> events(2);
  api::HistoryEvent& scheduled = events[0];
  scheduled.set_event_id(wt.scheduled_event_id());
  scheduled.set_event_type(api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
  *scheduled.mutable_event_time() = wt.scheduled_time();
  auto* attrs = scheduled.mutable_workflow_task_scheduled_event_attributes();
  attrs->mutable_task_queue()->set_name(state.task_queue());
  *attrs->mutable_start_to_close_timeout() = state.workflow_task_timeout();
  attrs->set_attempt(wt.attempt());
  api::HistoryEvent& started = events[1];
  started.set_event_id(wt.started_event_id());
  started.set_event_type(api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
  *started.mutable_event_time() = wt.started_time();
  auto* started_attrs = started.mutable_workflow_task_started_event_attributes();
  started_attrs->set_scheduled_event_id(wt.scheduled_event_id());
  started_attrs->set_identity(wt.identity());
  started_attrs->set_request_id(wt.started_request_id());
  return events;
}

absl::StatusOr<api::PollWorkflowTaskQueueResponse> HistoryEngine::RecordWorkflowTaskStarted(
    const QueuedTask& task, const std::string& identity, const std::string& poll_request_id,
    std::optional<bool> partial_history, const std::string& worker_instance_id) {
  // The answer's fields, taken under the run's lock from the state as it is after the start
  // (no copy of the whole state: it holds every pending activity's input).
  api::PollWorkflowTaskQueueResponse response;
  std::optional<api::History> recent;  // the history from the run cache, when it holds it
  int64_t from = 1;
  int64_t last_written = 0;                  // the last written event the worker gets
  std::vector<api::HistoryEvent> transient;  // a transient task's own events, not written
  {
    ASSIGN_OR_RETURN(auto handle, LoadRun(task.record.run_id()));
    const internal::ExecutionState& current = *(*handle)->state;
    if (current.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
      return absl::NotFoundError(absl::StrCat("workflow run ", current.run_id(), " is closed"));
    }
    const auto& wt = current.workflow_task();
    // The same poll retried finds its task started, perhaps as a first attempt now (a transient
    // retry written when it started: WorkflowTaskInfo.transient).
    const bool started_by_this_poll =
        wt.started_event_id() != 0 && wt.started_request_id() == poll_request_id;
    if (!started_by_this_poll && (wt.scheduled_event_id() != task.record.scheduled_event_id() ||
                                  wt.attempt() != task.record.attempt())) {
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
      FillWorkflowTask(current, &response);  // The same poll, retried: answer again.
      transient = TransientWorkflowTaskEvents(current);
    } else {
      Mutation m(current, clock_->Now(), task_ids_.get());
      RETURN_IF_ERROR(
          ApplyWorkflowTaskStarted(m, task.task_id, task.queue, identity, poll_request_id));
      RETURN_IF_ERROR(Commit(*handle, m));
      FillWorkflowTask(*(*handle)->state, &response);
      transient = TransientWorkflowTaskEvents(*(*handle)->state);
    }
    // A worker holding the run gets only what came after its previous task.
    if (*partial_history) from = response.previous_started_event_id() + 1;
    last_written = response.started_event_id() - static_cast<int64_t>(transient.size());
    recent = from > last_written ? api::History() : cache_.Recent(**handle, from, last_written);
  }

  // Otherwise read outside the run's lock: the events up to the started event never change.
  if (!recent.has_value()) {
    ASSIGN_OR_RETURN(recent, ReadEvents(response.workflow_execution().run_id(), from, last_written,
                                        static_cast<size_t>(limits::kMaxHistoryPageSize)));
  }
  api::History history = std::move(*recent);
  const int64_t next = from + history.events_size();
  *response.mutable_history() = std::move(history);
  const int64_t transient_started = transient.empty() ? 0 : response.started_event_id();
  if (next <= last_written) {
    // The last page, read with the token, ends with the transient task's events.
    response.set_next_page_token(HistoryPageToken(next, transient_started));
  } else {
    for (api::HistoryEvent& event : transient) {
      *response.mutable_history()->add_events() = std::move(event);
    }
  }
  return response;
}

void HistoryEngine::FillWorkflowTask(const internal::ExecutionState& state,
                                     api::PollWorkflowTaskQueueResponse* response) const {
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
  response->set_task_token(task_tokens_.Encode(token));
  response->mutable_workflow_execution()->set_workflow_id(state.workflow_id());
  response->mutable_workflow_execution()->set_run_id(state.run_id());
  response->mutable_workflow_type()->set_name(state.workflow_type());
  response->set_previous_started_event_id(state.last_completed_workflow_task_started_event_id());
  response->set_started_event_id(wt.started_event_id());
  response->set_attempt(wt.attempt());
  *response->mutable_scheduled_time() = wt.scheduled_time();
  *response->mutable_started_time() = wt.started_time();
}

std::shared_ptr<api::PollWorkflowTaskQueueResponse> HistoryEngine::AnswerBeforeCommit(
    Handle& handle, Mutation& m, const TaskReservation& reservation) {
  const internal::ExecutionState& state = m.state();
  const auto& events = m.new_events();
  if (events.empty()) return nullptr;
  auto response = std::make_shared<api::PollWorkflowTaskQueueResponse>();
  FillWorkflowTask(state, response.get());
  // What RecordWorkflowTaskStarted would send: a worker holding the run gets what followed its
  // previous task, any other the whole history.
  const bool partial = !reservation.worker_instance_id.empty() &&
                       state.sticky_worker() == reservation.worker_instance_id;
  const int64_t from = partial ? response->previous_started_event_id() + 1 : 1;
  const int64_t first_new = events.front().event_id();
  if (from > first_new || events.back().event_id() != response->started_event_id()) {
    return nullptr;
  }
  api::History* history = response->mutable_history();
  if (from < first_new) {
    // The committed part from the cache's tail (the state before this transition ends there).
    std::optional<api::History> committed = cache_.Recent(*handle, from, first_new - 1);
    if (!committed.has_value()) return nullptr;
    *history = std::move(*committed);
  }
  for (const api::HistoryEvent& event : events) *history->add_events() = event;
  if (history->events_size() > limits::kMaxHistoryPageSize) return nullptr;
  return response;
}

absl::Status HistoryEngine::ApplyWorkflowTaskStarted(Mutation& m, int64_t backlog_task_id,
                                                     const std::string& queue,
                                                     const std::string& identity,
                                                     const std::string& request_id) {
  const absl::Time now = m.now();
  auto* mwt = m.state().mutable_workflow_task();
  if (mwt->transient() && mwt->scheduled_event_id() != m.state().next_event_id()) {
    // Events were written since the retry was scheduled: it is written now, as a first attempt
    // (Temporal's server does the same), so that the worker's history has them before it.
    api::HistoryEvent* scheduled = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
    auto* attrs = scheduled->mutable_workflow_task_scheduled_event_attributes();
    attrs->mutable_task_queue()->set_name(m.state().task_queue());
    *attrs->mutable_start_to_close_timeout() = m.state().workflow_task_timeout();
    attrs->set_attempt(1);
    mwt->set_transient(false);
    mwt->set_scheduled_event_id(scheduled->event_id());
    mwt->set_attempt(1);
    *mwt->mutable_scheduled_time() = scheduled->event_time();
  }
  if (mwt->transient()) {
    // Not written: the worker gets the events with its task (TransientWorkflowTaskEvents).
    mwt->set_started_event_id(mwt->scheduled_event_id() + 1);
    ToProto(now, mwt->mutable_started_time());
    mwt->set_started_request_id(request_id);
    mwt->set_identity(identity);
  } else {
    api::HistoryEvent* event = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
    auto* started = event->mutable_workflow_task_started_event_attributes();
    started->set_scheduled_event_id(mwt->scheduled_event_id());
    started->set_identity(identity);
    started->set_request_id(request_id);
    // The pending task's start, as its event records it.
    mwt->set_started_event_id(event->event_id());
    *mwt->mutable_started_time() = event->event_time();
    mwt->set_started_request_id(started->request_id());
    mwt->set_identity(started->identity());
  }
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
  if (!wt.transient()) {  // a transient retry's failure is not written
    auto* failed = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_FAILED)
                       ->mutable_workflow_task_failed_event_attributes();
    failed->set_scheduled_event_id(wt.scheduled_event_id());
    failed->set_started_event_id(wt.started_event_id());
    failed->set_cause(cause);
    failed->mutable_failure()->set_message(message.substr(0, limits::kMaxFailureMessageBytes));
    failed->set_identity(identity);
  }
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
  absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> response =
      absl::InternalError("the workflow task's completion did not run");
  std::optional<QueuedTask> forced_task;
  auto complete = [&](Handle& handle) { response = CompleteOnRun(handle, request, &forced_task); };
  // The run's commit that sent this task out may be held for this answer (Commit): then this
  // transition runs on the holder's run, whose lock the holder lends it, and its commit carries
  // the holder's batch.
  AnswerHolds::Holder* holder =
      holds_ == nullptr ? nullptr : holds_->Take(token.run_id(), token.scheduled_event_id());
  if (holder != nullptr) {
    complete(holder->handle());
    holds_->Return(holder);
  } else {
    ASSIGN_OR_RETURN(auto handle, LoadRun(token.run_id()));
    complete(*handle);
  }
  if (response.ok() && forced_task.has_value()) {
    // The run's lock is not held here (RecordWorkflowTaskStarted locks the run itself). Answered
    // as a retry of the start just recorded: no new transition. A sticky worker keeps the run,
    // so it gets the events after the task it completed.
    ASSIGN_OR_RETURN(*response->mutable_workflow_task(),
                     RecordWorkflowTaskStarted(*forced_task, WorkerIdentity(request),
                                               forced_task->started_request_id,
                                               !request.sticky_worker().empty()));
  }
  return response;
}

absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> HistoryEngine::CompleteOnRun(
    Handle& handle, const api::RespondWorkflowTaskCompletedRequest& request,
    std::optional<QueuedTask>* forced_task) {
  RETURN_IF_ERROR(CheckWorkflowToken(handle, request.task_token()).status());
  // The cached state stays as it is until Commit replaces it: no copy needed.
  const internal::ExecutionState& state = *handle->state;

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
        FailWorkflowTask(handle, state, api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                         "new events arrived while the workflow task ran", request.identity()));
    api::RespondWorkflowTaskCompletedResponse refused;
    refused.set_rejected_cause(api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND);
    return refused;
  }

  Mutation m(state, clock_->Now(), task_ids_.get());
  api::WorkflowTaskFailedCause cause = api::WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED;
  bool bad_command = false;
  api::RespondWorkflowTaskCompletedResponse response;
  absl::Status completed = CompleteWorkflowTask(handle, m, request, &bad_command, &cause, &response,
                                                nullptr, forced_task);
  if (bad_command) {
    // A bad command fails the task (recorded) and the worker hears why. Nothing was committed:
    // `state` is still the run's.
    RETURN_IF_ERROR(FailWorkflowTask(handle, state, cause, std::string(completed.message()),
                                     request.identity()));
  }
  RETURN_IF_ERROR(completed);
  return response;
}

absl::Status HistoryEngine::CompleteWorkflowTask(
    Handle& handle, Mutation& m, const api::RespondWorkflowTaskCompletedRequest& request,
    bool* bad_command, api::WorkflowTaskFailedCause* cause,
    api::RespondWorkflowTaskCompletedResponse* response, WriteBatch* also,
    std::optional<QueuedTask>* forced_task) {
  const int64_t scheduled_event_id = m.state().workflow_task().scheduled_event_id();
  const int64_t started_event_id = m.state().workflow_task().started_event_id();
  // A transient retry completes: its events are written now, with the ids and times its worker
  // saw (events that arrived while it ran are buffered, so the ids are still free).
  for (api::HistoryEvent& event : TransientWorkflowTaskEvents(m.state())) {
    if (event.event_id() != m.state().next_event_id()) {
      return absl::InternalError(absl::StrCat("transient workflow task event ", event.event_id(),
                                              " is not the run's next event"));
    }
    *m.Append(event.event_type()) = std::move(event);
  }
  auto* completed = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
                        ->mutable_workflow_task_completed_event_attributes();
  completed->set_scheduled_event_id(scheduled_event_id);
  completed->set_started_event_id(started_event_id);
  completed->set_identity(request.identity());
  completed->set_binary_checksum(request.binary_checksum());
  if (request.has_sdk_metadata()) *completed->mutable_sdk_metadata() = request.sdk_metadata();
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
    // A workflow task heartbeat (force_create_new_workflow_task: the worker is still busy, with
    // a local activity, past the task's timeout) asks for a new task even without new events.
    if (had_buffered || request.force_create_new_workflow_task()) {
      RETURN_IF_ERROR(m.ScheduleWorkflowTask());
    }
    RETURN_IF_ERROR(StartEagerActivities(m, request, &eager));
    if (request.force_create_new_workflow_task() && request.return_new_workflow_task() &&
        forced_task != nullptr) {
      // Started in this transition for the worker that sent the heartbeat, which goes on at
      // once, as from Temporal's server; nobody else may take it meanwhile.
      RETURN_IF_ERROR(m.Finalize());
      if (QueuedTask* task = NewPendingWorkflowTask(m); task != nullptr) {
        RETURN_IF_ERROR(StartNewTask(m, *task, WorkerIdentity(request)));
        *forced_task = *task;
      }
    }
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
  if (!wt.transient()) {  // a transient retry's failure is not written
    auto* failed = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_FAILED)
                       ->mutable_workflow_task_failed_event_attributes();
    failed->set_scheduled_event_id(wt.scheduled_event_id());
    failed->set_started_event_id(wt.started_event_id());
    failed->set_cause(request.cause());
    *failed->mutable_failure() = request.failure();
    failed->set_identity(request.identity());
  }
  m.state().clear_workflow_task();
  m.FlushBuffered();
  RETURN_IF_ERROR(m.ScheduleWorkflowTask(wt.attempt() + 1));
  return Commit(*handle, m);
}

}  // namespace kiln::orchestrator
