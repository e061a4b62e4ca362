// The frontend's two long polls, the calls that wait without holding a thread:
//  - a task-queue poll (PollWorkflowTaskQueue, PollActivityTaskQueue) waits in matching,
//    records the start of the task it gets and answers with it; a stale task (its run closed,
//    or it was superseded) is dropped and the poll goes on until its deadline;
//  - a history read (GetWorkflowExecutionHistory) that may wait for new events, which is how
//    a client waits for a workflow's result.
// Each answers empty at its deadline, records itself in RpcMetrics once, and finishes the call
// exactly once (RefCountedReactor). `deps` and `metrics` must outlive every call started.
// The caller has admitted and validated the call already.
#pragma once

#include <functional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "orchestrator/frontend/frontend_deps.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/rpc/rpc_metrics.h"

namespace kiln::orchestrator {

// Where a task-queue poll waits, for whom, and until when.
struct TaskPollTarget {
  std::string ns;
  std::string queue;
  std::string identity;
  bool exclusive = false;
  absl::Time deadline;
  // The worker's instance (its cache of runs), for a workflow task's partial history.
  std::string worker_instance_id;
};

// Records the start of `task` (as a retry of `request_id`) and builds the poll's answer.
// NOT_FOUND or FAILED_PRECONDITION: the task is stale.
template <typename Response>
using StartTask =
    std::function<absl::StatusOr<Response>(const QueuedTask& task, const std::string& request_id)>;

// Starts a PollWorkflowTaskQueue call; returns its reactor.
grpc::ServerUnaryReactor* StartWorkflowTaskPoll(
    const FrontendDeps& deps, RpcMetrics* metrics, TaskPollTarget target,
    api::PollWorkflowTaskQueueResponse* response,
    StartTask<api::PollWorkflowTaskQueueResponse> start);

// Starts a PollActivityTaskQueue call; returns its reactor.
grpc::ServerUnaryReactor* StartActivityTaskPoll(
    const FrontendDeps& deps, RpcMetrics* metrics, TaskPollTarget target,
    api::PollActivityTaskQueueResponse* response,
    StartTask<api::PollActivityTaskQueueResponse> start);

// Starts a GetWorkflowExecutionHistory call that waits for new events until `deadline`;
// returns its reactor. The request is copied. `admit` (may be empty) runs on the executor before
// the first read: the caller's check of the run (Authorizer::CheckRun); its error is the answer.
grpc::ServerUnaryReactor* StartHistoryWait(const FrontendDeps& deps, RpcMetrics* metrics,
                                           const api::GetWorkflowExecutionHistoryRequest* request,
                                           api::GetWorkflowExecutionHistoryResponse* response,
                                           absl::Time deadline,
                                           std::function<absl::Status()> admit = {});

}  // namespace kiln::orchestrator
