// HistoryEngine: transfer tasks — work on another run that a committed transition implies
// (start a child, tell a parent its child closed, apply a parent close policy, signal or
// cancel another workflow). They ride the durable timer queue due "now", so a crash cannot
// lose them; each step is idempotent, so running one twice changes nothing. A transfer never
// holds two runs' locks at once.
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"

namespace kiln::orchestrator {
namespace {

absl::Status DropKey(Store* store, const std::string& key) {
  WriteBatch batch;
  batch.Delete(Table::kTimers, key);
  return store->Commit(batch);
}

bool Open(const internal::ExecutionState& state) {
  return state.status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING;
}

}  // namespace

absl::Status HistoryEngine::FireTransfer(const std::string& key, const internal::TimerTask& task) {
  switch (task.type()) {
    case internal::TIMER_TASK_TYPE_START_CHILD:
      return StartChild(key, task);
    case internal::TIMER_TASK_TYPE_CHILD_CLOSED:
      return ReportChildClosed(key, task);
    case internal::TIMER_TASK_TYPE_PARENT_CLOSE_POLICY:
      return ApplyParentClosePolicy(key, task);
    case internal::TIMER_TASK_TYPE_SIGNAL_EXTERNAL:
      return SignalExternal(key, task);
    case internal::TIMER_TASK_TYPE_CANCEL_EXTERNAL:
      return CancelExternal(key, task);
    default:
      return DropKey(store_, key);
  }
}

absl::Status HistoryEngine::StartChild(const std::string& key, const internal::TimerTask& task) {
  internal::ChildInfo child;
  bool transient_workflow_task_retries = false;  // as the parent's
  {
    auto parent = LoadRun(task.run_id());
    if (absl::IsNotFound(parent.status())) return DropKey(store_, key);
    if (!parent.ok()) return parent.status();
    const internal::ExecutionState& state = *(**parent)->state;
    auto it = state.children().find(task.event_id());
    if (!Open(state) || it == state.children().end() || !it->second.run_id().empty()) {
      return DropKey(store_, key);
    }
    child = it->second;
    transient_workflow_task_retries = state.transient_workflow_task_retries();
  }
  ASSIGN_OR_RETURN(api::History initiated,
                   ReadEvents(task.run_id(), task.event_id(), task.event_id(), 1));
  if (initiated.events_size() != 1) return absl::DataLossError("child initiated event missing");
  const auto& a = initiated.events(0).start_child_workflow_execution_initiated_event_attributes();
  api::StartWorkflowExecutionRequest request;
  request.set_namespace_(a.namespace_());
  request.set_workflow_id(a.workflow_id());
  *request.mutable_workflow_type() = a.workflow_type();
  *request.mutable_task_queue() = a.task_queue();
  *request.mutable_input() = a.input();
  *request.mutable_workflow_execution_timeout() = a.workflow_execution_timeout();
  *request.mutable_workflow_run_timeout() = a.workflow_run_timeout();
  *request.mutable_workflow_task_timeout() = a.workflow_task_timeout();
  request.set_workflow_id_reuse_policy(a.workflow_id_reuse_policy());
  *request.mutable_header() = a.header();
  *request.mutable_memo() = a.memo();
  *request.mutable_search_attributes() = a.search_attributes();
  request.set_identity("kiln-history");
  request.set_transient_workflow_task_retries(transient_workflow_task_retries);
  // The same request id every time this transfer runs: a retry finds the child it started.
  request.set_request_id(absl::StrCat("child:", task.run_id(), ":", task.event_id()));
  ParentInfo parent_info{task.namespace_(), task.workflow_id(), task.run_id(), task.event_id()};
  auto started = StartInternal(request, &parent_info, nullptr);
  if (!started.ok() && !absl::IsAlreadyExists(started.status())) return started.status();

  ASSIGN_OR_RETURN(auto parent, LoadRun(task.run_id()));
  const internal::ExecutionState& state = *(*parent)->state;
  auto it = state.children().find(task.event_id());
  if (!Open(state) || it == state.children().end() || !it->second.run_id().empty()) {
    return DropKey(store_, key);
  }
  Mutation m(state, clock_->Now(), task_ids_.get());
  m.Delete(Table::kTimers, key);
  if (started.ok()) {
    ASSIGN_OR_RETURN(api::HistoryEvent * event,
                     m.AddWorkflowEvent(api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED));
    auto* attrs = event->mutable_child_workflow_execution_started_event_attributes();
    attrs->set_namespace_(child.namespace_());
    attrs->set_initiated_event_id(task.event_id());
    attrs->mutable_workflow_execution()->set_workflow_id(child.workflow_id());
    attrs->mutable_workflow_execution()->set_run_id(started->run_id());
    attrs->mutable_workflow_type()->set_name(child.workflow_type());
    auto& info = (*m.state().mutable_children())[task.event_id()];
    info.set_run_id(attrs->workflow_execution().run_id());
    info.set_started_event_id(event->event_id());
  } else {
    ASSIGN_OR_RETURN(api::HistoryEvent * event,
                     m.AddWorkflowEvent(api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED));
    auto* attrs = event->mutable_start_child_workflow_execution_failed_event_attributes();
    attrs->set_namespace_(child.namespace_());
    attrs->set_workflow_id(child.workflow_id());
    attrs->mutable_workflow_type()->set_name(child.workflow_type());
    attrs->set_cause("WORKFLOW_ALREADY_EXISTS");
    attrs->set_initiated_event_id(task.event_id());
    m.state().mutable_children()->erase(task.event_id());
  }
  return Commit(*parent, m);
}

absl::Status HistoryEngine::ReportChildClosed(const std::string& key,
                                              const internal::TimerTask& task) {
  // The child (this task's run) closed: find how, then tell the parent.
  internal::ExecutionState child;
  {
    auto loaded = LoadRun(task.run_id());
    if (!loaded.ok()) {
      return absl::IsNotFound(loaded.status()) ? DropKey(store_, key) : loaded.status();
    }
    child = *(**loaded)->state;
  }
  ASSIGN_OR_RETURN(api::History closed,
                   ReadEvents(child.run_id(), child.close_event_id(), child.close_event_id(), 1));
  if (closed.events_size() != 1) return absl::DataLossError("child close event missing");
  const api::HistoryEvent& close = closed.events(0);

  auto parent = LoadRun(task.target_run_id());
  if (absl::IsNotFound(parent.status())) return DropKey(store_, key);
  if (!parent.ok()) return parent.status();
  const internal::ExecutionState& state = *(**parent)->state;
  auto it = state.children().find(task.event_id());
  if (!Open(state) || it == state.children().end()) return DropKey(store_, key);
  const internal::ChildInfo& info = it->second;
  Mutation m(state, clock_->Now(), task_ids_.get());
  m.Delete(Table::kTimers, key);
  // What every kind of child close event says about the child.
  auto identify = [&](auto* a) {
    a->set_namespace_(info.namespace_());
    a->mutable_workflow_execution()->set_workflow_id(child.workflow_id());
    a->mutable_workflow_execution()->set_run_id(child.run_id());
    a->mutable_workflow_type()->set_name(child.workflow_type());
    a->set_initiated_event_id(task.event_id());
    a->set_started_event_id(info.started_event_id());
  };
  switch (close.event_type()) {
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: {
      ASSIGN_OR_RETURN(auto* e,
                       m.AddWorkflowEvent(api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED));
      auto* a = e->mutable_child_workflow_execution_completed_event_attributes();
      *a->mutable_result() = close.workflow_execution_completed_event_attributes().result();
      identify(a);
      break;
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: {
      ASSIGN_OR_RETURN(auto* e,
                       m.AddWorkflowEvent(api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED));
      auto* a = e->mutable_child_workflow_execution_failed_event_attributes();
      *a->mutable_failure() = close.workflow_execution_failed_event_attributes().failure();
      identify(a);
      break;
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: {
      ASSIGN_OR_RETURN(auto* e,
                       m.AddWorkflowEvent(api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED));
      auto* a = e->mutable_child_workflow_execution_canceled_event_attributes();
      *a->mutable_details() = close.workflow_execution_canceled_event_attributes().details();
      identify(a);
      break;
    }
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: {
      ASSIGN_OR_RETURN(auto* e,
                       m.AddWorkflowEvent(api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT));
      auto* a = e->mutable_child_workflow_execution_timed_out_event_attributes();
      identify(a);
      a->set_retry_state(api::RETRY_STATE_TIMEOUT);
      break;
    }
    default: {
      ASSIGN_OR_RETURN(auto* e,
                       m.AddWorkflowEvent(api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED));
      identify(e->mutable_child_workflow_execution_terminated_event_attributes());
    }
  }
  m.state().mutable_children()->erase(task.event_id());
  return Commit(**parent, m);
}

absl::Status HistoryEngine::ApplyParentClosePolicy(const std::string& key,
                                                   const internal::TimerTask& task) {
  api::WorkflowExecution target;
  target.set_workflow_id(task.target_workflow_id());  // its current run: it may have continued
  auto child = LoadExecution(task.namespace_(), target);
  if (absl::IsNotFound(child.status())) return DropKey(store_, key);
  if (!child.ok()) return child.status();
  const internal::ExecutionState& state = *(**child)->state;
  if (!Open(state) || state.parent_run_id() != task.run_id()) return DropKey(store_, key);
  if (task.parent_close_policy() == api::PARENT_CLOSE_POLICY_REQUEST_CANCEL) {
    RETURN_IF_ERROR(CancelRun(**child, "parent closed (policy REQUEST_CANCEL)", "kiln-history"));
    return DropKey(store_, key);
  }
  Mutation m(state, clock_->Now(), task_ids_.get());
  m.Delete(Table::kTimers, key);
  m.FlushBuffered();
  auto* attrs = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)
                    ->mutable_workflow_execution_terminated_event_attributes();
  attrs->set_reason("parent closed (policy TERMINATE)");
  attrs->set_identity("kiln-history");
  RETURN_IF_ERROR(m.Close(api::WORKFLOW_EXECUTION_STATUS_TERMINATED));
  return Commit(**child, m);
}

absl::Status HistoryEngine::SignalExternal(const std::string& key,
                                           const internal::TimerTask& task) {
  return DeliverExternalRequest(
      key, task,
      [&](Handle& target, const internal::ExternalRequest& request) {
        return SignalRun(target,
                         SignalInfo{request.signal_name(),
                                    request.input(),
                                    absl::StrCat("workflow:", task.workflow_id()),
                                    {}},
                         absl::StrCat("signal:", task.run_id(), ":", task.event_id()));
      },
      [&](Mutation& m, const internal::ExternalRequest& request,
          const api::WorkflowExecution& execution, const std::string& failure_cause) {
        if (failure_cause.empty()) {
          ASSIGN_OR_RETURN(
              auto* e, m.AddWorkflowEvent(api::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED));
          auto* a = e->mutable_external_workflow_execution_signaled_event_attributes();
          a->set_initiated_event_id(task.event_id());
          a->set_namespace_(request.namespace_());
          *a->mutable_workflow_execution() = execution;
          a->set_control(request.control());
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(
            auto* e, m.AddWorkflowEvent(api::EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED));
        auto* a = e->mutable_signal_external_workflow_execution_failed_event_attributes();
        a->set_cause(failure_cause);
        a->set_namespace_(request.namespace_());
        *a->mutable_workflow_execution() = execution;
        a->set_initiated_event_id(task.event_id());
        a->set_control(request.control());
        return absl::OkStatus();
      });
}

absl::Status HistoryEngine::CancelExternal(const std::string& key,
                                           const internal::TimerTask& task) {
  return DeliverExternalRequest(
      key, task,
      [&](Handle& target, const internal::ExternalRequest& request) {
        return CancelRun(
            target, request.reason().empty() ? "requested by another workflow" : request.reason(),
            absl::StrCat("workflow:", task.workflow_id()));
      },
      [&](Mutation& m, const internal::ExternalRequest& request,
          const api::WorkflowExecution& execution, const std::string& failure_cause) {
        if (failure_cause.empty()) {
          ASSIGN_OR_RETURN(
              auto* e,
              m.AddWorkflowEvent(api::EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED));
          auto* a = e->mutable_external_workflow_execution_cancel_requested_event_attributes();
          a->set_initiated_event_id(task.event_id());
          a->set_namespace_(request.namespace_());
          *a->mutable_workflow_execution() = execution;
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(
            auto* e,
            m.AddWorkflowEvent(api::EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED));
        auto* a = e->mutable_request_cancel_external_workflow_execution_failed_event_attributes();
        a->set_cause(failure_cause);
        a->set_namespace_(request.namespace_());
        *a->mutable_workflow_execution() = execution;
        a->set_initiated_event_id(task.event_id());
        a->set_control(request.control());
        return absl::OkStatus();
      });
}

absl::Status HistoryEngine::DeliverExternalRequest(
    const std::string& key, const internal::TimerTask& task,
    absl::FunctionRef<absl::Status(Handle&, const internal::ExternalRequest&)> deliver,
    absl::FunctionRef<absl::Status(Mutation&, const internal::ExternalRequest&,
                                   const api::WorkflowExecution&, const std::string&)>
        record) {
  internal::ExternalRequest request;
  {
    auto source = LoadRun(task.run_id());
    if (absl::IsNotFound(source.status())) return DropKey(store_, key);
    if (!source.ok()) return source.status();
    const internal::ExecutionState& state = *(**source)->state;
    auto it = state.external_requests().find(task.event_id());
    if (!Open(state) || it == state.external_requests().end()) return DropKey(store_, key);
    request = it->second;
  }
  api::WorkflowExecution target;
  target.set_workflow_id(request.workflow_id());
  target.set_run_id(request.run_id());
  absl::Status outcome;
  {
    auto handle = LoadExecution(Namespace(request.namespace_()), target);
    outcome = handle.ok() ? deliver(**handle, request) : handle.status();
  }
  if (!outcome.ok() && !absl::IsNotFound(outcome) && !absl::IsFailedPrecondition(outcome)) {
    return outcome;  // Retried.
  }
  auto source = LoadRun(task.run_id());
  if (!source.ok()) {
    return absl::IsNotFound(source.status()) ? DropKey(store_, key) : source.status();
  }
  const internal::ExecutionState& state = *(**source)->state;
  if (!Open(state) || !state.external_requests().contains(task.event_id())) {
    return DropKey(store_, key);
  }
  Mutation m(state, clock_->Now(), task_ids_.get());
  m.Delete(Table::kTimers, key);
  std::string failure_cause;
  if (!outcome.ok()) {
    failure_cause = absl::IsNotFound(outcome) ? "EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND"
                                              : "EXTERNAL_WORKFLOW_EXECUTION_CLOSED";
  }
  RETURN_IF_ERROR(record(m, request, target, failure_cause));
  m.state().mutable_external_requests()->erase(task.event_id());
  return Commit(**source, m);
}

}  // namespace kiln::orchestrator
