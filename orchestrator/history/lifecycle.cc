// HistoryEngine: starting runs (plain, signal-with-start, children, continue-as-new), signals,
// cancellation requests and query tasks. The transfer tasks that act on other runs are
// in transfers.cc.
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/limits.h"

namespace kiln::orchestrator {
namespace {

bool IsFailedStatus(api::WorkflowExecutionStatus status) {
  return status == api::WORKFLOW_EXECUTION_STATUS_FAILED ||
         status == api::WORKFLOW_EXECUTION_STATUS_CANCELED ||
         status == api::WORKFLOW_EXECUTION_STATUS_TERMINATED ||
         status == api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT;
}

}  // namespace

Mutation HistoryEngine::NewRun(const api::StartWorkflowExecutionRequest& request,
                               const std::string& run_id, const ParentInfo* parent,
                               const SignalInfo* signal, const std::string& continued_from_run_id,
                               const std::string& first_run_id, absl::Time now) {
  internal::ExecutionState state;
  state.set_namespace_(Namespace(request.namespace_()));
  state.set_workflow_id(request.workflow_id());
  state.set_run_id(run_id);
  state.set_workflow_type(request.workflow_type().name());
  state.set_task_queue(request.task_queue().name());
  state.set_status(api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  state.set_next_event_id(1);
  ToProto(now, state.mutable_start_time());
  absl::Duration task_timeout = FromProto(request.workflow_task_timeout());
  if (task_timeout <= absl::ZeroDuration()) task_timeout = limits::kDefaultWorkflowTaskTimeout;
  task_timeout = std::min(task_timeout, limits::kMaxWorkflowTaskTimeout);
  ToProto(task_timeout, state.mutable_workflow_task_timeout());
  absl::Duration run_timeout = FromProto(request.workflow_run_timeout());
  absl::Duration execution_timeout = FromProto(request.workflow_execution_timeout());
  if (execution_timeout > absl::ZeroDuration() &&
      (run_timeout <= absl::ZeroDuration() || run_timeout > execution_timeout)) {
    run_timeout = execution_timeout;
  }
  if (run_timeout > absl::ZeroDuration()) {
    ToProto(now + run_timeout, state.mutable_run_expiration_time());
    ToProto(run_timeout, state.mutable_workflow_run_timeout());
  }
  state.set_start_request_id(request.request_id());
  state.set_first_run_id(first_run_id.empty() ? run_id : first_run_id);
  *state.mutable_search_attributes() = request.search_attributes();
  *state.mutable_memo() = request.memo();
  state.set_transient_workflow_task_retries(request.transient_workflow_task_retries());
  if (parent != nullptr) {
    state.set_parent_namespace(parent->ns);
    state.set_parent_workflow_id(parent->workflow_id);
    state.set_parent_run_id(parent->run_id);
    state.set_parent_initiated_event_id(parent->initiated_event_id);
  }

  Mutation m(state, now, task_ids_.get());
  auto* started = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
                      ->mutable_workflow_execution_started_event_attributes();
  *started->mutable_workflow_type() = request.workflow_type();
  *started->mutable_task_queue() = request.task_queue();
  *started->mutable_input() = request.input();
  *started->mutable_workflow_execution_timeout() = request.workflow_execution_timeout();
  if (run_timeout > absl::ZeroDuration()) {
    ToProto(run_timeout, started->mutable_workflow_run_timeout());
  }
  ToProto(task_timeout, started->mutable_workflow_task_timeout());
  started->set_identity(request.identity());
  started->set_original_execution_run_id(run_id);
  started->set_first_execution_run_id(state.first_run_id());
  started->set_continued_execution_run_id(continued_from_run_id);
  started->set_attempt(1);
  *started->mutable_retry_policy() = request.retry_policy();
  *started->mutable_memo() = request.memo();
  *started->mutable_search_attributes() = request.search_attributes();
  *started->mutable_header() = request.header();
  started->set_request_id(request.request_id());
  if (parent != nullptr) {
    started->set_parent_workflow_namespace(parent->ns);
    started->mutable_parent_workflow_execution()->set_workflow_id(parent->workflow_id);
    started->mutable_parent_workflow_execution()->set_run_id(parent->run_id);
    started->set_parent_initiated_event_id(parent->initiated_event_id);
  }
  if (signal != nullptr) {
    auto* signaled = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
                         ->mutable_workflow_execution_signaled_event_attributes();
    signaled->set_signal_name(signal->name);
    *signaled->mutable_input() = signal->input;
    signaled->set_identity(signal->identity);
    *signaled->mutable_header() = signal->header;
  }
  return m;
}

absl::StatusOr<api::StartWorkflowExecutionResponse> HistoryEngine::StartInternal(
    const api::StartWorkflowExecutionRequest& request, const ParentInfo* parent,
    const SignalInfo* signal) {
  const std::string ns = Namespace(request.namespace_());
  const std::string& workflow_id = request.workflow_id();
  fiber::MutexLock stripe(&start_stripes_[absl::HashOf(ns, workflow_id) % kStartStripes]);

  api::StartWorkflowExecutionResponse response;
  // The current run stays locked until the new one is committed: continue-as-new (which moves
  // the current pointer while holding its run's lock) cannot slip in between.
  std::unique_ptr<Handle> current_handle;
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto current = CurrentRunId(ns, workflow_id);
    if (absl::IsNotFound(current.status())) break;
    if (!current.ok()) return current.status();
    ASSIGN_OR_RETURN(current_handle, LoadRun(*current));
    auto again = CurrentRunId(ns, workflow_id);
    if (again.ok() && *again == *current) break;
    current_handle.reset();  // It continued as new meanwhile: look again.
  }
  if (current_handle != nullptr) {
    const internal::ExecutionState& state = *(*current_handle)->state;
    if (!request.request_id().empty() && state.start_request_id() == request.request_id()) {
      RETURN_IF_ERROR(SyncBeforeAnswering());
      response.set_run_id(state.run_id());  // A retried start: same answer, nothing new.
      return response;
    }
    bool open = state.status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING;
    if (open && signal != nullptr) {
      RETURN_IF_ERROR(SignalRun(*current_handle, *signal, request.request_id()));
      response.set_run_id(state.run_id());
      return response;
    }
    if (open) {
      switch (request.workflow_id_conflict_policy()) {
        case api::WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING:
          response.set_run_id(state.run_id());
          return response;
        case api::WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING: {
          Mutation m(state, clock_->Now(), task_ids_.get());
          m.FlushBuffered();
          auto* attrs = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)
                            ->mutable_workflow_execution_terminated_event_attributes();
          attrs->set_reason("terminated by a new start (conflict policy TERMINATE_EXISTING)");
          attrs->set_identity(request.identity());
          RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_TERMINATED));
          RETURN_IF_ERROR(Commit(*current_handle, m));
          break;
        }
        default:
          return absl::AlreadyExistsError(absl::StrCat(
              "workflow ", workflow_id, " is already running (run ", state.run_id(), ")"));
      }
    } else {
      auto policy = request.workflow_id_reuse_policy();
      if (policy == api::WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE) {
        return absl::AlreadyExistsError(
            absl::StrCat("workflow ", workflow_id, " already ran (run ", state.run_id(),
                         ") and the reuse policy REJECT_DUPLICATE forbids another run"));
      }
      if (policy == api::WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY &&
          !IsFailedStatus(state.status())) {
        return absl::AlreadyExistsError(absl::StrCat(
            "workflow ", workflow_id, " already completed successfully (run ", state.run_id(),
            ") and the reuse policy ALLOW_DUPLICATE_FAILED_ONLY forbids another run"));
      }
    }
  }

  // Creates the run as `run_id` at `now`; with `speculative`, completes the first task with it
  // too (false, nothing done, when it does not fit).
  auto start = [&](const std::string& run_id, absl::Time now,
                   const api::SpeculativeWorkflowTask* speculative) -> absl::StatusOr<bool> {
    Mutation m = NewRun(request, run_id, parent, signal, "", "", now);
    RETURN_IF_ERROR(m.ScheduleWorkflowTask());
    if (IsSet(m.state().run_expiration_time())) {
      RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_WORKFLOW_RUN_TIMEOUT,
                                 FromProto(m.state().run_expiration_time()), 0, 0)
                          .status());
      m.state().set_run_timeout_timer_key(m.last_timer_key());
    }
    m.TouchVisibility();
    WriteBatch current_batch;
    internal::CurrentRun current_run;
    current_run.set_run_id(run_id);
    current_batch.Put(Table::kCurrent, keys::Current(ns, workflow_id),
                      current_run.SerializeAsString());
    // Eager start: the first workflow task is started for the caller in this same transition.
    std::optional<QueuedTask> eager;
    if (request.request_eager_execution() && parent == nullptr) {
      if (QueuedTask* task = NewPendingWorkflowTask(m); task != nullptr) {
        RETURN_IF_ERROR(StartNewTask(m, *task, request.identity()));
        eager = *task;
      }
    }
    if (speculative != nullptr) {
      // The caller ran the first task on events 1-3 at `now`: it must be so, and recent.
      if (!eager.has_value() || m.state().workflow_task().started_event_id() != 3 ||
          now < clock_->Now() - FromProto(m.state().workflow_task_timeout())) {
        return false;
      }
      // The run id is the caller's: it must be free (checked under its lock, so two starts
      // proposing one id cannot both take it).
      auto handle = cache_.Acquire(run_id);
      if ((*handle)->state.has_value()) return false;
      absl::StatusOr<std::optional<std::string>> taken;
      {
        fiber::ParkScope park;  // Only fiber::Mutexes held (the stripe, the run): may park.
        taken = store_->Get(Table::kExecutions, keys::Execution(run_id));
      }
      if (!taken.ok()) return taken.status();
      if (taken->has_value()) return false;
      bool bad_command = false;
      api::WorkflowTaskFailedCause cause = api::WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED;
      api::RespondWorkflowTaskCompletedResponse completed;
      absl::Status done = CompleteWorkflowTask(*handle, m, speculative->completion(), &bad_command,
                                               &cause, &completed, &current_batch);
      if (bad_command) return false;
      RETURN_IF_ERROR(done);
      response.set_run_id(run_id);
      response.set_started(true);
      *response.mutable_first_task_completed() = std::move(completed);
      return true;
    }
    {
      auto handle = cache_.Acquire(run_id);
      // Nothing of the run is read after: the commit may be held for the first task's answer.
      RETURN_IF_ERROR(
          Commit(*handle, m, &current_batch, nullptr, /*may_hold=*/eager == std::nullopt));
    }
    response.set_run_id(run_id);
    response.set_started(true);
    if (eager.has_value()) {
      // Answered as a retry of the start just recorded: no new transition.
      ASSIGN_OR_RETURN(
          *response.mutable_eager_workflow_task(),
          RecordWorkflowTaskStarted(*eager, request.identity(), eager->started_request_id));
    }
    return true;
  };

  if (request.has_speculative_first_task() && request.request_eager_execution() &&
      parent == nullptr && signal == nullptr) {
    // The caller's first task, on its run id and at its time, if they fit.
    const api::SpeculativeWorkflowTask& speculative = request.speculative_first_task();
    const absl::Time now = clock_->Now();
    const absl::Time started = FromProto(speculative.started_time());
    if (speculative.next_event_id() == 1 && IsUuid(speculative.run_id()) &&
        started <= now + limits::kMaxSpeculativeClockSkew) {
      ASSIGN_OR_RETURN(bool accepted, start(speculative.run_id(), started, &speculative));
      if (accepted) return response;
    }
  }
  const absl::Time now = clock_->Now();
  RETURN_IF_ERROR(start(ids_->NewTimeOrderedUuid(now), now, nullptr).status());
  return response;
}

absl::StatusOr<api::StartWorkflowExecutionResponse> HistoryEngine::StartWorkflowExecution(
    const api::StartWorkflowExecutionRequest& request) {
  return StartInternal(request, nullptr, nullptr);
}

absl::StatusOr<api::SignalWithStartWorkflowExecutionResponse>
HistoryEngine::SignalWithStartWorkflowExecution(
    const api::SignalWithStartWorkflowExecutionRequest& request) {
  if (request.signal_name().empty()) return absl::InvalidArgumentError("signal_name: must be set");
  SignalInfo signal{request.signal_name(), request.signal_input(), request.start().identity(),
                    request.start().header()};
  ASSIGN_OR_RETURN(auto started, StartInternal(request.start(), nullptr, &signal));
  api::SignalWithStartWorkflowExecutionResponse response;
  response.set_run_id(started.run_id());
  response.set_started(started.started());
  return response;
}

absl::Status HistoryEngine::SyncBeforeAnswering() {
  WriteBatch barrier;
  barrier.Put(Table::kMeta, keys::kSyncBarrier, "");
  fiber::ParkScope park;  // Callers hold only their run's lock (a fiber::Mutex): may park.
  return store_->Commit(barrier);
}

absl::Status HistoryEngine::SignalRun(Handle& handle, const SignalInfo& signal,
                                      const std::string& request_id) {
  const internal::ExecutionState& state = *handle->state;
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("workflow run ", state.run_id(), " is closed: it cannot be signalled"));
  }
  if (!request_id.empty()) {
    // Runs written before the ids moved out of the state still hold theirs there.
    for (const std::string& seen : state.signal_request_ids()) {
      if (seen == request_id) return SyncBeforeAnswering();  // Delivered already.
    }
    absl::StatusOr<std::optional<std::string>> seen;
    {
      fiber::ParkScope park;  // Only the run's lock (a fiber::Mutex) is held: may park.
      seen = store_->Get(Table::kMeta, keys::SignalRequest(state.run_id(), request_id));
    }
    if (!seen.ok()) return seen.status();
    if (seen->has_value()) return SyncBeforeAnswering();  // Delivered already.
  }
  if (state.signals_received() >= limits::kMaxSignalsPerRun) {
    return absl::ResourceExhaustedError(
        absl::StrCat("workflow run ", state.run_id(), " has received ", limits::kMaxSignalsPerRun,
                     " signals, the limit per run (it may continue as new to take more)"));
  }
  Mutation m(state, clock_->Now(), task_ids_.get());
  m.state().set_signals_received(state.signals_received() + 1);
  ASSIGN_OR_RETURN(api::HistoryEvent * event,
                   m.AddWorkflowEvent(api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED));
  auto* attrs = event->mutable_workflow_execution_signaled_event_attributes();
  attrs->set_signal_name(signal.name);
  *attrs->mutable_input() = signal.input;
  attrs->set_identity(signal.identity);
  *attrs->mutable_header() = signal.header;
  if (!request_id.empty()) {
    // The event's id: which delivery a retried request matched, should anyone ask.
    m.Put(Table::kMeta, keys::SignalRequest(state.run_id(), request_id),
          absl::StrCat(event->event_id()));
  }
  return Commit(handle, m);
}

absl::Status HistoryEngine::SignalWorkflowExecution(
    const api::SignalWorkflowExecutionRequest& request) {
  if (request.signal_name().empty()) return absl::InvalidArgumentError("signal_name: must be set");
  if (request.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("input: over the limit of ", limits::kMaxPayloadBytes, " bytes"));
  }
  // A signal to the workflow's current run may resolve it just before it continues as new, and
  // lock it just after: it then goes to the new run (looked up again), as Temporal does.
  constexpr int kMaxCurrentRunLookups = 4;
  for (int lookup = 1;; ++lookup) {
    ASSIGN_OR_RETURN(auto handle,
                     LoadExecution(Namespace(request.namespace_()), request.workflow_execution()));
    if (request.workflow_execution().run_id().empty() && lookup < kMaxCurrentRunLookups &&
        (*handle)->state->status() == api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW) {
      continue;
    }
    return SignalRun(
        *handle,
        SignalInfo{request.signal_name(), request.input(), request.identity(), request.header()},
        request.request_id());
  }
}

absl::Status HistoryEngine::CancelRun(Handle& handle, const std::string& reason,
                                      const std::string& identity) {
  const internal::ExecutionState& state = *handle->state;
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("workflow run ", state.run_id(), " is already closed"));
  }
  if (state.cancel_requested()) return absl::OkStatus();  // Once is enough.
  Mutation m(state, clock_->Now(), task_ids_.get());
  ASSIGN_OR_RETURN(api::HistoryEvent * event,
                   m.AddWorkflowEvent(api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED));
  event->mutable_workflow_execution_cancel_requested_event_attributes()->set_cause(reason);
  event->mutable_workflow_execution_cancel_requested_event_attributes()->set_identity(identity);
  m.state().set_cancel_requested(true);
  return Commit(handle, m);
}

absl::Status HistoryEngine::RequestCancelWorkflowExecution(
    const api::RequestCancelWorkflowExecutionRequest& request) {
  ASSIGN_OR_RETURN(auto handle,
                   LoadExecution(Namespace(request.namespace_()), request.workflow_execution()));
  return CancelRun(*handle, request.reason(), request.identity());
}

absl::Status HistoryEngine::ContinueAsNew(
    Mutation& m, const api::ContinueAsNewWorkflowExecutionCommandAttributes& a,
    int64_t completed_event_id, std::unique_ptr<Mutation>* new_run, WriteBatch* extra) {
  const internal::ExecutionState& state = m.state();
  std::string run_id = ids_->NewTimeOrderedUuid(clock_->Now());
  api::StartWorkflowExecutionRequest request;
  request.set_namespace_(state.namespace_());
  request.set_workflow_id(state.workflow_id());
  request.mutable_workflow_type()->set_name(
      a.workflow_type().name().empty() ? state.workflow_type() : a.workflow_type().name());
  request.mutable_task_queue()->set_name(a.task_queue().name().empty() ? state.task_queue()
                                                                       : a.task_queue().name());
  *request.mutable_input() = a.input();
  *request.mutable_workflow_run_timeout() =
      a.has_workflow_run_timeout() ? a.workflow_run_timeout() : state.workflow_run_timeout();
  *request.mutable_workflow_task_timeout() =
      a.has_workflow_task_timeout() ? a.workflow_task_timeout() : state.workflow_task_timeout();
  *request.mutable_search_attributes() = state.search_attributes();
  *request.mutable_memo() = state.memo();
  request.set_transient_workflow_task_retries(state.transient_workflow_task_retries());
  request.set_request_id(absl::StrCat("continue:", state.run_id()));

  auto* event = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
                    ->mutable_workflow_execution_continued_as_new_event_attributes();
  event->set_new_execution_run_id(run_id);
  *event->mutable_workflow_type() = request.workflow_type();
  *event->mutable_task_queue() = request.task_queue();
  *event->mutable_input() = request.input();
  *event->mutable_workflow_run_timeout() = request.workflow_run_timeout();
  *event->mutable_workflow_task_timeout() = request.workflow_task_timeout();
  event->set_workflow_task_completed_event_id(completed_event_id);

  ParentInfo parent;
  bool has_parent = !state.parent_run_id().empty();
  if (has_parent) {
    parent = ParentInfo{state.parent_namespace(), state.parent_workflow_id(), state.parent_run_id(),
                        state.parent_initiated_event_id()};
  }
  auto next =
      std::make_unique<Mutation>(NewRun(request, run_id, has_parent ? &parent : nullptr, nullptr,
                                        state.run_id(), state.first_run_id(), m.now()));
  RETURN_IF_ERROR(next->ScheduleWorkflowTask());
  if (IsSet(next->state().run_expiration_time())) {
    RETURN_IF_ERROR(next->AddTimer(internal::TIMER_TASK_TYPE_WORKFLOW_RUN_TIMEOUT,
                                   FromProto(next->state().run_expiration_time()), 0, 0)
                        .status());
    next->state().set_run_timeout_timer_key(next->last_timer_key());
  }
  next->TouchVisibility();
  RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW));
  internal::CurrentRun current;
  current.set_run_id(run_id);
  extra->Put(Table::kCurrent, keys::Current(state.namespace_(), state.workflow_id()),
             current.SerializeAsString());
  *new_run = std::move(next);
  return absl::OkStatus();
}

absl::StatusOr<api::PollWorkflowTaskQueueResponse> HistoryEngine::BuildQueryTask(
    const QueuedTask& task, const api::WorkflowQuery& query) {
  internal::ExecutionState state;
  {
    ASSIGN_OR_RETURN(auto handle, LoadRun(task.record.run_id()));
    state = *(*handle)->state;
  }
  api::PollWorkflowTaskQueueResponse response;
  internal::TaskToken token;
  token.set_namespace_(state.namespace_());
  token.set_workflow_id(state.workflow_id());
  token.set_run_id(state.run_id());
  token.set_kind("q");
  token.set_activity_id(task.record.query_id());  // the query id
  response.set_task_token(task_tokens_.Encode(token));
  response.mutable_workflow_execution()->set_workflow_id(state.workflow_id());
  response.mutable_workflow_execution()->set_run_id(state.run_id());
  response.mutable_workflow_type()->set_name(state.workflow_type());
  response.set_previous_started_event_id(state.last_completed_workflow_task_started_event_id());
  // The whole history so far: the worker replays it and asks the workflow's query handler.
  ASSIGN_OR_RETURN(api::History history,
                   ReadEvents(state.run_id(), 1, state.next_event_id() - 1,
                              static_cast<size_t>(limits::kMaxHistoryPageSize)));
  *response.mutable_history() = std::move(history);
  *response.mutable_query() = query;
  return response;
}

}  // namespace kiln::orchestrator
