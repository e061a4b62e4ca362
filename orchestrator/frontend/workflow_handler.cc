#include "orchestrator/frontend/workflow_handler.h"

#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/hop_trace.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "common/status.h"
#include "common/version.h"
#include "orchestrator/frontend/long_polls.h"
#include "orchestrator/frontend/start_wait.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/rpc/reactor.h"
#include "orchestrator/rpc/validation.h"

namespace kiln::orchestrator {

WorkflowHandler::WorkflowHandler(FrontendDeps deps)
    : deps_(std::move(deps)), metrics_(deps_.registry), start_time_(absl::Now()) {}

absl::StatusOr<Principal> WorkflowHandler::Admit(Ctx* ctx, Rpc rpc, std::string_view task_queue,
                                                 bool exclusive) {
  if (deps_.authorizer == nullptr) return Principal{};
  return deps_.authorizer->Admit(*ctx, rpc, task_queue, exclusive);
}

absl::Status WorkflowHandler::CheckTaskAnswer(const Principal& principal, Rpc rpc,
                                              const std::string& task_token, bool drives_workflow) {
  if (deps_.authorizer == nullptr) return absl::OkStatus();
  return deps_.authorizer->CheckTaskAnswer(principal, rpc, task_token, drives_workflow);
}

absl::Status WorkflowHandler::CheckStart(const Principal& principal, Rpc rpc,
                                         std::string_view task_queue) {
  if (deps_.authorizer == nullptr) return absl::OkStatus();
  return deps_.authorizer->CheckStart(principal, rpc, task_queue);
}

TaskQueueFilter WorkflowHandler::VisibleRuns(const Principal& principal) const {
  if (deps_.authorizer == nullptr) return {};
  return deps_.authorizer->VisibleRuns(principal);
}

absl::Status WorkflowHandler::CheckRun(const Principal& principal, Rpc rpc, const std::string& ns,
                                       const api::WorkflowExecution& execution) {
  if (deps_.authorizer == nullptr) return absl::OkStatus();
  return deps_.authorizer->CheckRun(principal, rpc, ns, execution);
}

template <typename PollRequest>
TaskPollTarget WorkflowHandler::PollTarget(Ctx* ctx, const PollRequest& request) {
  return TaskPollTarget{
      .ns = request.namespace_().empty() ? deps_.engine->default_namespace() : request.namespace_(),
      .queue = request.task_queue().name(),
      .identity = request.identity(),
      .exclusive = request.exclusive(),
      .deadline = PollDeadline(ctx),
      .worker_instance_id = {}};
}

absl::Time WorkflowHandler::PollDeadline(Ctx* ctx) {
  absl::Time now = deps_.clock->Now();
  absl::Time deadline = now + deps_.long_poll;
  absl::Time caller = absl::FromChrono(ctx->deadline());
  if (caller - limits::kLongPollMargin < deadline) deadline = caller - limits::kLongPollMargin;
  return std::max(deadline, now);
}

grpc::ServerUnaryReactor* WorkflowHandler::RunOnExecutor(Ctx* ctx, const char* method,
                                                         std::function<absl::Status()> work) {
  return kiln::orchestrator::RunOnExecutor(ctx, *deps_.executor, *deps_.clock, metrics_, method,
                                           std::move(work));
}

// Refuses the call unless its caller may call the method (the Rpc named like it).
#define KILN_AUTHORIZE(ctx, method, ...) \
  KILN_REJECT_IF_ERROR(ctx, metrics_, #method, Admit(ctx, Rpc::k##method, ##__VA_ARGS__).status())

template <typename Response, typename Validate, typename Work>
grpc::ServerUnaryReactor* WorkflowHandler::Unary(Ctx* ctx, Rpc rpc, const char* method,
                                                 Response* response, Validate validate, Work work) {
  absl::StatusOr<Principal> principal = Admit(ctx, rpc);
  KILN_REJECT_IF_ERROR(ctx, metrics_, method, principal.status());
  KILN_REJECT_IF_ERROR(ctx, metrics_, method, validate());
  // Writes a value answer into the response (on the executor: the call is not finished yet).
  auto answer = [response](auto result) -> absl::Status {
    if constexpr (std::is_same_v<decltype(result), absl::Status>) {
      return result;
    } else {
      if (!result.ok()) return result.status();
      *response = std::move(*result);
      return absl::OkStatus();
    }
  };
  // Only a call that checks its caller further keeps the Principal.
  if constexpr (std::is_invocable_v<const Work&, const Principal&>) {
    return RunOnExecutor(ctx, method,
                         [answer, work = std::move(work), principal = std::move(*principal)] {
                           return answer(work(principal));
                         });
  } else {
    return RunOnExecutor(ctx, method, [answer, work = std::move(work)] { return answer(work()); });
  }
}

grpc::ServerUnaryReactor* WorkflowHandler::StartWorkflowExecution(
    Ctx* ctx, const api::StartWorkflowExecutionRequest* request,
    api::StartWorkflowExecutionResponse* response) {
  if (request->has_wait_for_close() &&
      FromProto(request->wait_for_close()) > absl::ZeroDuration()) {
    return StartAndWait(ctx, request, response);
  }
  return Unary(
      ctx, Rpc::kStartWorkflowExecution, "StartWorkflowExecution", response,
      [request] { return ValidateStart(*request); },
      [this,
       request](const Principal& principal) -> absl::StatusOr<api::StartWorkflowExecutionResponse> {
        RETURN_IF_ERROR(
            CheckStart(principal, Rpc::kStartWorkflowExecution, request->task_queue().name()));
        return deps_.engine->StartWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::StartAndWait(
    Ctx* ctx, const api::StartWorkflowExecutionRequest* request,
    api::StartWorkflowExecutionResponse* response) {
  hoptrace::Mark("o.start.h");
  constexpr char kMethod[] = "StartWorkflowExecution.WaitForClose";
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kStartWorkflowExecution);
  KILN_REJECT_IF_ERROR(ctx, metrics_, kMethod, principal.status());
  KILN_REJECT_IF_ERROR(ctx, metrics_, kMethod, ValidateStart(*request));
  const absl::Time deadline =
      std::min(PollDeadline(ctx), deps_.clock->Now() + FromProto(request->wait_for_close()));
  return StartAndWaitForClose(
      deps_, &metrics_, request, response, deadline,
      [this, request,
       principal = *principal]() -> absl::StatusOr<api::StartWorkflowExecutionResponse> {
        RETURN_IF_ERROR(
            CheckStart(principal, Rpc::kStartWorkflowExecution, request->task_queue().name()));
        return deps_.engine->StartWorkflowExecution(*request);
      },
      [this, principal = *principal,
       ns = request->namespace_()](const api::WorkflowExecution& execution) {
        // Waiting for the result is reading the run: the history read's rule.
        return CheckRun(principal, Rpc::kGetWorkflowExecutionHistory, ns, execution);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::TerminateWorkflowExecution(
    Ctx* ctx, const api::TerminateWorkflowExecutionRequest* request,
    api::TerminateWorkflowExecutionResponse* response) {
  return Unary(
      ctx, Rpc::kTerminateWorkflowExecution, "TerminateWorkflowExecution", response,
      [request] { return ValidateTerminate(*request); },
      [this, request](const Principal& principal) -> absl::Status {
        RETURN_IF_ERROR(CheckRun(principal, Rpc::kTerminateWorkflowExecution, request->namespace_(),
                                 request->workflow_execution()));
        return deps_.engine->TerminateWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::ResetWorkflowExecution(
    Ctx* ctx, const api::ResetWorkflowExecutionRequest* request,
    api::ResetWorkflowExecutionResponse* response) {
  return Unary(
      ctx, Rpc::kResetWorkflowExecution, "ResetWorkflowExecution", response,
      [request] { return ValidateReset(*request); },
      [this,
       request](const Principal& principal) -> absl::StatusOr<api::ResetWorkflowExecutionResponse> {
        RETURN_IF_ERROR(CheckRun(principal, Rpc::kResetWorkflowExecution, request->namespace_(),
                                 request->workflow_execution()));
        return deps_.engine->ResetWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::DescribeWorkflowExecution(
    Ctx* ctx, const api::DescribeWorkflowExecutionRequest* request,
    api::DescribeWorkflowExecutionResponse* response) {
  return Unary(
      ctx, Rpc::kDescribeWorkflowExecution, "DescribeWorkflowExecution", response,
      [request] { return ValidateExecution(request->execution(), false); },
      [this, request](
          const Principal& principal) -> absl::StatusOr<api::DescribeWorkflowExecutionResponse> {
        RETURN_IF_ERROR(CheckRun(principal, Rpc::kDescribeWorkflowExecution, request->namespace_(),
                                 request->execution()));
        return deps_.engine->DescribeWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::GetWorkflowExecutionHistory(
    Ctx* ctx, const api::GetWorkflowExecutionHistoryRequest* request,
    api::GetWorkflowExecutionHistoryResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kGetWorkflowExecutionHistory);
  KILN_REJECT_IF_ERROR(ctx, metrics_, "GetWorkflowExecutionHistory", principal.status());
  KILN_REJECT_IF_ERROR(ctx, metrics_, "GetWorkflowExecutionHistory",
                       ValidateExecution(request->execution(), false));
  return StartHistoryWait(deps_, &metrics_, request, response, PollDeadline(ctx),
                          [this, principal = std::move(*principal), ns = request->namespace_(),
                           execution = request->execution()] {
                            return CheckRun(principal, Rpc::kGetWorkflowExecutionHistory, ns,
                                            execution);
                          });
}

grpc::ServerUnaryReactor* WorkflowHandler::ListWorkflowExecutions(
    Ctx* ctx, const api::ListWorkflowExecutionsRequest* request,
    api::ListWorkflowExecutionsResponse* response) {
  return Unary(
      ctx, Rpc::kListWorkflowExecutions, "ListWorkflowExecutions", response,
      [request] { return ValidateList(*request); },
      [this, request](const Principal& principal) {
        return deps_.engine->ListWorkflowExecutions(*request, VisibleRuns(principal));
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::PollWorkflowTaskQueue(
    Ctx* ctx, const api::PollWorkflowTaskQueueRequest* request,
    api::PollWorkflowTaskQueueResponse* response) {
  KILN_AUTHORIZE(ctx, PollWorkflowTaskQueue, request->task_queue().name(), request->exclusive());
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollWorkflowTaskQueue",
                       ValidateNamespace(request->namespace_()));
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollWorkflowTaskQueue",
                       ValidateTaskQueue(request->task_queue()));
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollWorkflowTaskQueue",
                       ValidateIdentity(request->identity()));
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollWorkflowTaskQueue",
                       ValidateWorkerInstance(request->worker_instance_id(), "worker_instance_id"));
  std::string identity = request->identity();
  std::string instance = request->worker_instance_id();
  TaskPollTarget target = PollTarget(ctx, *request);
  target.worker_instance_id = instance;
  return StartWorkflowTaskPoll(
      deps_, &metrics_, std::move(target), response,
      [this, identity, instance](const QueuedTask& task, const std::string& request_id)
          -> absl::StatusOr<api::PollWorkflowTaskQueueResponse> {
        if (!task.record.query_id().empty()) {
          auto query = queries_.Get(task.record.query_id());
          if (!query.has_value()) return absl::NotFoundError("query no longer waiting");
          return deps_.engine->BuildQueryTask(task, *query);
        }
        return deps_.engine->RecordWorkflowTaskStarted(task, identity, request_id, std::nullopt,
                                                       instance);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::PollActivityTaskQueue(
    Ctx* ctx, const api::PollActivityTaskQueueRequest* request,
    api::PollActivityTaskQueueResponse* response) {
  KILN_AUTHORIZE(ctx, PollActivityTaskQueue, request->task_queue().name(), request->exclusive());
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollActivityTaskQueue",
                       ValidateNamespace(request->namespace_()));
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollActivityTaskQueue",
                       ValidateTaskQueue(request->task_queue()));
  KILN_REJECT_IF_ERROR(ctx, metrics_, "PollActivityTaskQueue",
                       ValidateIdentity(request->identity()));
  std::string identity = request->identity();
  return StartActivityTaskPoll(
      deps_, &metrics_, PollTarget(ctx, *request), response,
      [this, identity](const QueuedTask& task, const std::string& request_id) {
        return deps_.engine->RecordActivityTaskStarted(task, identity, request_id);
      });
}

grpc::ServerBidiReactor<api::WorkerStreamRequest, api::WorkerStreamResponse>*
WorkflowHandler::WorkerStream(Ctx* ctx) {
  return StartWorkerStream(ctx, deps_, &metrics_, this, &worker_streams_);
}

absl::StatusOr<Principal> WorkflowHandler::AdmitStream(Ctx* ctx,
                                                       const api::WorkerStreamOpen& open) {
  Rpc rpc;
  switch (open.kind()) {
    case api::WORKER_STREAM_KIND_WORKFLOW:
      rpc = Rpc::kPollWorkflowTaskQueue;
      break;
    case api::WORKER_STREAM_KIND_ACTIVITY:
      rpc = Rpc::kPollActivityTaskQueue;
      break;
    default:
      return absl::InvalidArgumentError("WorkerStream: kind must be workflow or activity");
  }
  // The same rules as the poll of its kind, once for the stream's life.
  absl::StatusOr<Principal> principal = Admit(ctx, rpc, open.task_queue().name(), open.exclusive());
  if (!principal.ok()) return principal.status();
  RETURN_IF_ERROR(ValidateNamespace(open.namespace_()));
  RETURN_IF_ERROR(ValidateTaskQueue(open.task_queue()));
  RETURN_IF_ERROR(ValidateIdentity(open.identity()));
  RETURN_IF_ERROR(ValidateWorkerInstance(open.worker_instance_id(), "worker_instance_id"));
  if (open.exclusive() && open.identity().empty()) {
    return absl::InvalidArgumentError("an exclusive WorkerStream needs an identity");
  }
  return principal;
}

absl::Status WorkflowHandler::StartStreamTask(const QueuedTask& task, const std::string& request_id,
                                              const api::WorkerStreamOpen& open,
                                              api::WorkerStreamResponse* out) {
  if (task.kind == keys::TaskKind::kWorkflow) {
    absl::StatusOr<api::PollWorkflowTaskQueueResponse> started;
    if (!task.record.query_id().empty()) {
      auto query = queries_.Get(task.record.query_id());
      if (!query.has_value()) return absl::NotFoundError("query no longer waiting");
      started = deps_.engine->BuildQueryTask(task, *query);
    } else {
      started = deps_.engine->RecordWorkflowTaskStarted(task, open.identity(), request_id,
                                                        std::nullopt, open.worker_instance_id());
    }
    if (!started.ok()) return started.status();
    *out->add_workflow_tasks() = std::move(*started);
    return absl::OkStatus();
  }
  absl::StatusOr<api::PollActivityTaskQueueResponse> started =
      deps_.engine->RecordActivityTaskStarted(task, open.identity(), request_id);
  if (!started.ok()) return started.status();
  *out->add_activity_tasks() = std::move(*started);
  return absl::OkStatus();
}

api::WorkerStreamAnswer WorkflowHandler::Complete(const Principal& principal,
                                                  const api::WorkerStreamOpen& open,
                                                  const api::WorkerStreamCompletion& completion) {
  api::WorkerStreamAnswer answer;
  answer.set_seq(completion.seq());
  const bool workflow = open.kind() == api::WORKER_STREAM_KIND_WORKFLOW;
  // Each kind as its unary call: validation, the caller's check against the task token's queue,
  // the engine call.
  absl::Status status = [&]() -> absl::Status {
    using C = api::WorkerStreamCompletion;
    const bool workflow_answer = completion.completion_case() == C::kWorkflowTaskCompleted ||
                                 completion.completion_case() == C::kWorkflowTaskFailed;
    if (completion.completion_case() == C::COMPLETION_NOT_SET || workflow_answer != workflow) {
      return absl::InvalidArgumentError(
          "WorkerStream: a completion must answer a task of the stream's kind");
    }
    switch (completion.completion_case()) {
      case C::kWorkflowTaskCompleted: {
        const auto& request = completion.workflow_task_completed();
        RETURN_IF_ERROR(ValidateWorkerInstance(request.sticky_worker(), "sticky_worker"));
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondWorkflowTaskCompleted, request.task_token()));
        ASSIGN_OR_RETURN(*answer.mutable_workflow_task_completed(),
                         deps_.engine->RespondWorkflowTaskCompleted(request));
        return absl::OkStatus();
      }
      case C::kWorkflowTaskFailed: {
        const auto& request = completion.workflow_task_failed();
        RETURN_IF_ERROR(ValidateWorkflowTaskFailed(request));
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondWorkflowTaskFailed, request.task_token()));
        return deps_.engine->RespondWorkflowTaskFailed(request);
      }
      case C::kActivityTaskCompleted: {
        const auto& request = completion.activity_task_completed();
        RETURN_IF_ERROR(ValidateActivityCompleted(request));
        RETURN_IF_ERROR(CheckTaskAnswer(
            principal, Rpc::kRespondActivityTaskCompleted, request.task_token(),
            request.return_new_workflow_task() || request.has_speculative_workflow_task()));
        ASSIGN_OR_RETURN(*answer.mutable_activity_task_completed(),
                         deps_.engine->RespondActivityTaskCompleted(request));
        return absl::OkStatus();
      }
      case C::kActivityTaskFailed: {
        const auto& request = completion.activity_task_failed();
        RETURN_IF_ERROR(ValidateActivityFailed(request));
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondActivityTaskFailed, request.task_token()));
        return deps_.engine->RespondActivityTaskFailed(request);
      }
      case C::kActivityTaskCanceled: {
        const auto& request = completion.activity_task_canceled();
        RETURN_IF_ERROR(ValidateActivityCanceled(request));
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondActivityTaskCanceled, request.task_token()));
        return deps_.engine->RespondActivityTaskCanceled(request);
      }
      case C::COMPLETION_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("WorkerStream: empty completion");
  }();
  if (!status.ok()) {
    answer.clear_workflow_task_completed();
    answer.clear_activity_task_completed();
    answer.set_code(static_cast<int>(status.code()));
    answer.set_message(std::string(status.message()));
  }
  return answer;
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondWorkflowTaskCompleted(
    Ctx* ctx, const api::RespondWorkflowTaskCompletedRequest* request,
    api::RespondWorkflowTaskCompletedResponse* response) {
  return Unary(
      ctx, Rpc::kRespondWorkflowTaskCompleted, "RespondWorkflowTaskCompleted", response,
      [request] { return ValidateWorkflowTaskCompleted(*request); },
      [this, request](
          const Principal& principal) -> absl::StatusOr<api::RespondWorkflowTaskCompletedResponse> {
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondWorkflowTaskCompleted, request->task_token()));
        return deps_.engine->RespondWorkflowTaskCompleted(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondWorkflowTaskFailed(
    Ctx* ctx, const api::RespondWorkflowTaskFailedRequest* request,
    api::RespondWorkflowTaskFailedResponse* response) {
  return Unary(
      ctx, Rpc::kRespondWorkflowTaskFailed, "RespondWorkflowTaskFailed", response,
      [request] { return ValidateWorkflowTaskFailed(*request); },
      [this, request](const Principal& principal) -> absl::Status {
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondWorkflowTaskFailed, request->task_token()));
        return deps_.engine->RespondWorkflowTaskFailed(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RecordActivityTaskHeartbeat(
    Ctx* ctx, const api::RecordActivityTaskHeartbeatRequest* request,
    api::RecordActivityTaskHeartbeatResponse* response) {
  return Unary(
      ctx, Rpc::kRecordActivityTaskHeartbeat, "RecordActivityTaskHeartbeat", response,
      [request] { return ValidateHeartbeat(*request); },
      [this, request](
          const Principal& principal) -> absl::StatusOr<api::RecordActivityTaskHeartbeatResponse> {
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRecordActivityTaskHeartbeat, request->task_token()));
        return deps_.engine->RecordActivityTaskHeartbeat(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondActivityTaskCompleted(
    Ctx* ctx, const api::RespondActivityTaskCompletedRequest* request,
    api::RespondActivityTaskCompletedResponse* response) {
  return Unary(
      ctx, Rpc::kRespondActivityTaskCompleted, "RespondActivityTaskCompleted", response,
      [request] { return ValidateActivityCompleted(*request); },
      [this, request](
          const Principal& principal) -> absl::StatusOr<api::RespondActivityTaskCompletedResponse> {
        RETURN_IF_ERROR(CheckTaskAnswer(
            principal, Rpc::kRespondActivityTaskCompleted, request->task_token(),
            request->return_new_workflow_task() || request->has_speculative_workflow_task()));
        return deps_.engine->RespondActivityTaskCompleted(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondActivityTaskFailed(
    Ctx* ctx, const api::RespondActivityTaskFailedRequest* request,
    api::RespondActivityTaskFailedResponse* response) {
  return Unary(
      ctx, Rpc::kRespondActivityTaskFailed, "RespondActivityTaskFailed", response,
      [request] { return ValidateActivityFailed(*request); },
      [this, request](const Principal& principal) {
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondActivityTaskFailed, request->task_token()));
        return deps_.engine->RespondActivityTaskFailed(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondActivityTaskCanceled(
    Ctx* ctx, const api::RespondActivityTaskCanceledRequest* request,
    api::RespondActivityTaskCanceledResponse* response) {
  return Unary(
      ctx, Rpc::kRespondActivityTaskCanceled, "RespondActivityTaskCanceled", response,
      [request] { return ValidateActivityCanceled(*request); },
      [this, request](const Principal& principal) {
        RETURN_IF_ERROR(
            CheckTaskAnswer(principal, Rpc::kRespondActivityTaskCanceled, request->task_token()));
        return deps_.engine->RespondActivityTaskCanceled(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::CountWorkflowExecutions(
    Ctx* ctx, const api::CountWorkflowExecutionsRequest* request,
    api::CountWorkflowExecutionsResponse* response) {
  return Unary(
      ctx, Rpc::kCountWorkflowExecutions, "CountWorkflowExecutions", response,
      [request] { return ValidateCount(*request); },
      [this, request](const Principal& principal) {
        return deps_.engine->CountWorkflowExecutions(*request, VisibleRuns(principal));
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::SignalWorkflowExecution(
    Ctx* ctx, const api::SignalWorkflowExecutionRequest* request,
    api::SignalWorkflowExecutionResponse* response) {
  return Unary(
      ctx, Rpc::kSignalWorkflowExecution, "SignalWorkflowExecution", response,
      [request] { return ValidateSignal(*request); },
      [this, request](const Principal& principal) -> absl::Status {
        RETURN_IF_ERROR(CheckRun(principal, Rpc::kSignalWorkflowExecution, request->namespace_(),
                                 request->workflow_execution()));
        return deps_.engine->SignalWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::SignalWithStartWorkflowExecution(
    Ctx* ctx, const api::SignalWithStartWorkflowExecutionRequest* request,
    api::SignalWithStartWorkflowExecutionResponse* response) {
  return Unary(
      ctx, Rpc::kSignalWithStartWorkflowExecution, "SignalWithStartWorkflowExecution", response,
      [request] { return ValidateSignalWithStart(*request); },
      [this, request](const Principal& principal)
          -> absl::StatusOr<api::SignalWithStartWorkflowExecutionResponse> {
        RETURN_IF_ERROR(CheckStart(principal, Rpc::kSignalWithStartWorkflowExecution,
                                   request->start().task_queue().name()));
        return deps_.engine->SignalWithStartWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RequestCancelWorkflowExecution(
    Ctx* ctx, const api::RequestCancelWorkflowExecutionRequest* request,
    api::RequestCancelWorkflowExecutionResponse* response) {
  return Unary(
      ctx, Rpc::kRequestCancelWorkflowExecution, "RequestCancelWorkflowExecution", response,
      [request] { return ValidateCancel(*request); },
      [this, request](const Principal& principal) -> absl::Status {
        RETURN_IF_ERROR(CheckRun(principal, Rpc::kRequestCancelWorkflowExecution,
                                 request->namespace_(), request->workflow_execution()));
        return deps_.engine->RequestCancelWorkflowExecution(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::QueryWorkflow(Ctx* ctx,
                                                         const api::QueryWorkflowRequest* request,
                                                         api::QueryWorkflowResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kQueryWorkflow);
  KILN_REJECT_IF_ERROR(ctx, metrics_, "QueryWorkflow", principal.status());
  KILN_REJECT_IF_ERROR(ctx, metrics_, "QueryWorkflow", ValidateQuery(*request));
  Reactor* reactor = ctx->DefaultReactor();
  absl::Time began = deps_.clock->Now();
  absl::Time deadline = PollDeadline(ctx);
  bool queued = deps_.executor->TrySubmit([this, reactor, request, response, began, deadline,
                                           caller = *std::move(principal)] {
    auto finish = [this, reactor, began](const absl::Status& status) {
      metrics_.Record("QueryWorkflow", status, deps_.clock->Now() - began);
      reactor->Finish(ToGrpc(status));
    };
    if (absl::Status allowed =
            CheckRun(caller, Rpc::kQueryWorkflow, request->namespace_(), request->execution());
        !allowed.ok()) {
      return finish(allowed);
    }
    api::DescribeWorkflowExecutionRequest describe;
    describe.set_namespace_(request->namespace_());
    *describe.mutable_execution() = request->execution();
    auto described = deps_.engine->DescribeWorkflowExecution(describe);
    if (!described.ok()) return finish(described.status());
    const auto& info = described->workflow_execution_info();
    auto added =
        queries_.Add(request->query(), [finish, response](absl::StatusOr<api::Payloads> answer) {
          if (answer.ok()) *response->mutable_query_result() = std::move(*answer);
          finish(answer.status());
        });
    if (!added.ok()) return finish(added.status());
    std::string query_id = added->first;
    QueuedTask task;
    task.kind = keys::TaskKind::kWorkflow;
    task.ns =
        request->namespace_().empty() ? deps_.engine->default_namespace() : request->namespace_();
    task.queue = info.task_queue();
    task.task_id = added->second;
    task.record.set_namespace_(task.ns);
    task.record.set_workflow_id(info.execution().workflow_id());
    task.record.set_run_id(info.execution().run_id());
    task.record.set_query_id(query_id);
    deps_.matching->TaskAdded(std::move(task));
    deps_.clock->ScheduleAlarm(deadline, [this, query_id, queue = info.task_queue()] {
      queries_.Complete(query_id, absl::DeadlineExceededError(
                                      absl::StrCat("no worker on task queue ", queue,
                                                   " answered the query before the deadline")));
    });
  });
  if (!queued) {
    reactor->Finish(ToGrpc(absl::ResourceExhaustedError("orchestrator is overloaded")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::RespondQueryTaskCompleted(
    Ctx* ctx, const api::RespondQueryTaskCompletedRequest* request,
    api::RespondQueryTaskCompletedResponse* response) {
  KILN_AUTHORIZE(ctx, RespondQueryTaskCompleted);
  KILN_REJECT_IF_ERROR(ctx, metrics_, "RespondQueryTaskCompleted",
                       ValidateQueryTaskCompleted(*request));
  auto token = deps_.engine->task_tokens().Decode(request->task_token());
  absl::Status status = token.status();
  if (token.ok() && token->kind() != "q") {
    status = absl::InvalidArgumentError("task_token: not a query task");
  }
  if (status.ok()) {
    absl::StatusOr<api::Payloads> answer = request->query_result();
    if (request->completed_type() == api::QUERY_RESULT_TYPE_FAILED) {
      answer =
          absl::FailedPreconditionError(absl::StrCat("query failed: ", request->error_message()));
    }
    if (!queries_.Complete(token->activity_id(), std::move(answer))) {
      status = absl::NotFoundError("the query is no longer waiting (it timed out)");
    }
  }
  metrics_.Record("RespondQueryTaskCompleted", status, absl::ZeroDuration());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

grpc::ServerUnaryReactor* WorkflowHandler::DescribeTaskQueue(
    Ctx* ctx, const api::DescribeTaskQueueRequest* request,
    api::DescribeTaskQueueResponse* response) {
  return Unary(
      ctx, Rpc::kDescribeTaskQueue, "DescribeTaskQueue", response,
      [request] { return ValidateTaskQueue(request->task_queue()); },
      [this, request, response](const Principal& principal) -> absl::Status {
        auto described = deps_.matching->Describe(
            request->activity() ? keys::TaskKind::kActivity : keys::TaskKind::kWorkflow,
            request->namespace_().empty() ? deps_.engine->default_namespace()
                                          : request->namespace_(),
            request->task_queue().name());
        if (!described.ok()) return described.status();
        // An identity is what a poll presents to take an exclusive queue: admins only see them.
        const bool identities = principal.is_admin();
        for (const PollerInfo& poller : described->pollers) {
          auto* p = response->add_pollers();
          if (identities) p->set_identity(poller.identity);
          ToProto(poller.last_seen, p->mutable_last_access_time());
          p->set_waiting_polls(poller.waiting);
          p->set_stream(poller.stream);
        }
        response->set_backlog_count(described->backlog_count);
        if (!described->exclusive_holder.empty()) {
          if (identities) response->set_exclusive_holder(described->exclusive_holder);
          ToProto(described->exclusive_lease_expiry, response->mutable_exclusive_lease_expiry());
        }
        response->set_backlog_count_capped(described->backlog_count_capped);
        if (described->oldest_task_created != absl::InfinitePast()) {
          ToProto(deps_.clock->Now() - described->oldest_task_created,
                  response->mutable_oldest_task_age());
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::RevokeToken(Ctx* ctx,
                                                       const api::RevokeTokenRequest* request,
                                                       api::RevokeTokenResponse* response) {
  return Unary(
      ctx, Rpc::kRevokeToken, "RevokeToken", response, [] { return absl::OkStatus(); },
      [this, request]() -> absl::StatusOr<api::RevokeTokenResponse> {
        if (deps_.authorizer == nullptr) {
          return absl::FailedPreconditionError("RevokeToken: this orchestrator checks no tokens");
        }
        return deps_.authorizer->RevokeToken(*request);
      });
}

grpc::ServerUnaryReactor* WorkflowHandler::GetSystemInfo(Ctx* ctx,
                                                         const api::GetSystemInfoRequest* request,
                                                         api::GetSystemInfoResponse* response) {
  absl::StatusOr<Principal> principal = Admit(ctx, Rpc::kGetSystemInfo);
  KILN_REJECT_IF_ERROR(ctx, metrics_, "GetSystemInfo", principal.status());
  response->set_server_version(kVersion);
  response->mutable_start_time()->set_seconds(absl::ToUnixSeconds(start_time_));
  // Where the key and the admin credential live is for admins.
  if (principal->is_admin()) response->set_data_dir(deps_.data_dir);
  if (deps_.store != nullptr) {
    if (StoreHealth health = deps_.store->Health(); !health.writable) {
      response->set_store_read_only(true);
      response->set_store_read_only_reason(health.reason);
      response->mutable_store_read_only_since()->set_seconds(absl::ToUnixSeconds(health.since));
    }
  }
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kiln::orchestrator
