// The WorkflowService frontend: validates requests, applies limits, runs engine calls on the
// engine's executor (they may wait for a synced commit), and maps engine errors to gRPC codes.
// It uses gRPC's callback API, so waiting calls — task-queue long polls and history reads that
// wait for new events — hold no thread while they wait.
// This file is the table of RPCs: each handler admits its caller (Authorizer::Admit) first,
// then validates, then works. The reactor plumbing is in reactor.h, the long polls in
// long_polls.h.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "orchestrator/frontend/frontend_deps.h"
#include "orchestrator/frontend/long_polls.h"
#include "orchestrator/frontend/query_registry.h"
#include "orchestrator/frontend/worker_stream.h"
#include "orchestrator/rpc/authorizer.h"
#include "orchestrator/rpc/rpc_metrics.h"

namespace kiln::orchestrator {

class WorkflowHandler final : public kiln::api::v1::WorkflowService::CallbackService,
                              private WorkerStreamHost {
 public:
  explicit WorkflowHandler(FrontendDeps deps);

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;

  Reactor* StartWorkflowExecution(Ctx* ctx, const api::StartWorkflowExecutionRequest* request,
                                  api::StartWorkflowExecutionResponse* response) override;
  Reactor* TerminateWorkflowExecution(Ctx* ctx,
                                      const api::TerminateWorkflowExecutionRequest* request,
                                      api::TerminateWorkflowExecutionResponse* response) override;
  Reactor* ResetWorkflowExecution(Ctx* ctx, const api::ResetWorkflowExecutionRequest* request,
                                  api::ResetWorkflowExecutionResponse* response) override;
  Reactor* DescribeWorkflowExecution(Ctx* ctx, const api::DescribeWorkflowExecutionRequest* request,
                                     api::DescribeWorkflowExecutionResponse* response) override;
  Reactor* GetWorkflowExecutionHistory(Ctx* ctx,
                                       const api::GetWorkflowExecutionHistoryRequest* request,
                                       api::GetWorkflowExecutionHistoryResponse* response) override;
  Reactor* ListWorkflowExecutions(Ctx* ctx, const api::ListWorkflowExecutionsRequest* request,
                                  api::ListWorkflowExecutionsResponse* response) override;

  Reactor* PollWorkflowTaskQueue(Ctx* ctx, const api::PollWorkflowTaskQueueRequest* request,
                                 api::PollWorkflowTaskQueueResponse* response) override;
  Reactor* RespondWorkflowTaskCompleted(
      Ctx* ctx, const api::RespondWorkflowTaskCompletedRequest* request,
      api::RespondWorkflowTaskCompletedResponse* response) override;
  Reactor* RespondWorkflowTaskFailed(Ctx* ctx, const api::RespondWorkflowTaskFailedRequest* request,
                                     api::RespondWorkflowTaskFailedResponse* response) override;

  Reactor* PollActivityTaskQueue(Ctx* ctx, const api::PollActivityTaskQueueRequest* request,
                                 api::PollActivityTaskQueueResponse* response) override;
  Reactor* RecordActivityTaskHeartbeat(Ctx* ctx,
                                       const api::RecordActivityTaskHeartbeatRequest* request,
                                       api::RecordActivityTaskHeartbeatResponse* response) override;
  Reactor* RespondActivityTaskCompleted(
      Ctx* ctx, const api::RespondActivityTaskCompletedRequest* request,
      api::RespondActivityTaskCompletedResponse* response) override;
  Reactor* RespondActivityTaskFailed(Ctx* ctx, const api::RespondActivityTaskFailedRequest* request,
                                     api::RespondActivityTaskFailedResponse* response) override;
  Reactor* RespondActivityTaskCanceled(Ctx* ctx,
                                       const api::RespondActivityTaskCanceledRequest* request,
                                       api::RespondActivityTaskCanceledResponse* response) override;

  grpc::ServerBidiReactor<api::WorkerStreamRequest, api::WorkerStreamResponse>* WorkerStream(
      Ctx* ctx) override;

  Reactor* GetSystemInfo(Ctx* ctx, const api::GetSystemInfoRequest* request,
                         api::GetSystemInfoResponse* response) override;
  Reactor* RevokeToken(Ctx* ctx, const api::RevokeTokenRequest* request,
                       api::RevokeTokenResponse* response) override;

  Reactor* CountWorkflowExecutions(Ctx* ctx, const api::CountWorkflowExecutionsRequest* request,
                                   api::CountWorkflowExecutionsResponse* response) override;
  Reactor* SignalWorkflowExecution(Ctx* ctx, const api::SignalWorkflowExecutionRequest* request,
                                   api::SignalWorkflowExecutionResponse* response) override;
  Reactor* SignalWithStartWorkflowExecution(
      Ctx* ctx, const api::SignalWithStartWorkflowExecutionRequest* request,
      api::SignalWithStartWorkflowExecutionResponse* response) override;
  Reactor* RequestCancelWorkflowExecution(
      Ctx* ctx, const api::RequestCancelWorkflowExecutionRequest* request,
      api::RequestCancelWorkflowExecutionResponse* response) override;
  Reactor* QueryWorkflow(Ctx* ctx, const api::QueryWorkflowRequest* request,
                         api::QueryWorkflowResponse* response) override;
  Reactor* RespondQueryTaskCompleted(Ctx* ctx, const api::RespondQueryTaskCompletedRequest* request,
                                     api::RespondQueryTaskCompletedResponse* response) override;
  Reactor* DescribeTaskQueue(Ctx* ctx, const api::DescribeTaskQueueRequest* request,
                             api::DescribeTaskQueueResponse* response) override;

 private:
  // WorkerStreamHost: the stream's open, task starts and completions, checked as the polls and
  // the Respond* calls are.
  absl::StatusOr<Principal> AdmitStream(Ctx* ctx, const api::WorkerStreamOpen& open) override;
  absl::Status StartStreamTask(const QueuedTask& task, const std::string& request_id,
                               const api::WorkerStreamOpen& open,
                               api::WorkerStreamResponse* out) override;
  api::WorkerStreamAnswer Complete(const Principal& principal, const api::WorkerStreamOpen& open,
                                   const api::WorkerStreamCompletion& completion) override;

  // StartWorkflowExecution with wait_for_close (start_wait.h).
  Reactor* StartAndWait(Ctx* ctx, const api::StartWorkflowExecutionRequest* request,
                        api::StartWorkflowExecutionResponse* response);
  // One unary call, as every handler that answers from the executor is: admits the caller
  // (Authorizer::Admit), then checks the request with `validate` (() -> absl::Status), each
  // refusal answered at once and recorded as `method`; then runs `work` on the executor and
  // finishes the call with its status (RunOnExecutor: recorded with its latency, mapped to a
  // gRPC code). `work` takes the admitted Principal if it needs it (a further check of the
  // caller), or nothing, and returns absl::Status, or absl::StatusOr<Response> whose value
  // becomes the answer.
  template <typename Response, typename Validate, typename Work>
  Reactor* Unary(Ctx* ctx, Rpc rpc, const char* method, Response* response, Validate validate,
                 Work work);
  // Runs `work` on the executor and finishes the call with its status.
  Reactor* RunOnExecutor(Ctx* ctx, const char* method, std::function<absl::Status()> work);
  // The caller of `rpc`, if it may call it at all (Authorizer::Admit).
  absl::StatusOr<Principal> Admit(Ctx* ctx, Rpc rpc, std::string_view task_queue = {},
                                  bool exclusive = false);
  // Authorizer::CheckTaskAnswer, or OK without an authorizer.
  absl::Status CheckTaskAnswer(const Principal& principal, Rpc rpc, const std::string& task_token,
                               bool drives_workflow = false);
  // Authorizer::CheckStart, or OK without an authorizer.
  absl::Status CheckStart(const Principal& principal, Rpc rpc, std::string_view task_queue);
  // Authorizer::VisibleRuns, or every run without an authorizer.
  TaskQueueFilter VisibleRuns(const Principal& principal) const;
  // Authorizer::CheckRun, or OK without an authorizer.
  absl::Status CheckRun(const Principal& principal, Rpc rpc, const std::string& ns,
                        const api::WorkflowExecution& execution);
  // When a long poll started now should end, given the caller's own deadline.
  // What a task poll asks for: its namespace (the default when empty), queue, poller and
  // deadline.
  template <typename PollRequest>
  TaskPollTarget PollTarget(Ctx* ctx, const PollRequest& request);
  absl::Time PollDeadline(Ctx* ctx);

  FrontendDeps deps_;
  RpcMetrics metrics_;
  QueryRegistry queries_;
  absl::Time start_time_;
  WorkerStreamCounts worker_streams_;
};

}  // namespace kiln::orchestrator
