// StartWorkflowExecution with wait_for_close: the start, then a wait for the run to close
// whose answer carries the close event the closing transition committed (RunWatchers::
// WatchClose hands it over after the commit; nothing is read back and no executor hop is
// taken). The caller needs no GetWorkflowExecutionHistory long poll for its result: one call
// per workflow instead of two, and the wake-ups of the second.
//
// The wait ends without a close event (the start's answer alone, the caller waits as usual) at
// `deadline`, when the caller may not read the run, when the watchers refuse (their limit, a
// shutdown), and when the close event is larger than kMaxWaitedCloseEventBytes. An
// orchestrator that stops while the call waits ends it (UNAVAILABLE, or the answer without a
// close event at a graceful shutdown); a retry with the same request id finds the same run (the
// start is deduplicated) and waits for it again, so nothing is lost across a restart.
// Recorded in RpcMetrics as "StartWorkflowExecution.WaitForClose", with the wait in its latency.
#pragma once

#include <cstddef>
#include <functional>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "orchestrator/frontend/frontend_deps.h"
#include "orchestrator/rpc/rpc_metrics.h"

namespace kiln::orchestrator {

// A close event above this is left to the caller's history read: the watcher copies it on the
// engine's thread that committed the close, which should not copy megabytes per caller.
inline constexpr size_t kMaxWaitedCloseEventBytes = 1 << 20;

// Starts the call; returns its reactor. `start` runs once on the executor (the caller's check of
// the queue and the engine's start; its error is the answer); `may_read` runs there after it,
// with the started run: whether the caller may read it (Authorizer::CheckRun), else the start's
// answer goes without waiting. `request` and `response` are the call's own (gRPC keeps them
// until the call is finished, which waits for `start`).
grpc::ServerUnaryReactor* StartAndWaitForClose(
    const FrontendDeps& deps, RpcMetrics* metrics,
    const api::StartWorkflowExecutionRequest* request,
    api::StartWorkflowExecutionResponse* response, absl::Time deadline,
    std::function<absl::StatusOr<api::StartWorkflowExecutionResponse>()> start,
    std::function<absl::Status(const api::WorkflowExecution&)> may_read);

}  // namespace kiln::orchestrator
