// WorkerStream: a worker's long-lived stream, on which the orchestrator pushes tasks and answers
// completions (the decoupled path without a poll per task; docs/fast-paths.md, "Push stream").
//
// The first request opens the stream (kind, namespace, queue, identity, exclusive), admitted
// once by the same rules as the poll of its kind. While the worker has credits (free slots it
// granted), the stream keeps one waiting poll in matching per credit, so a transition that
// creates a task starts it at schedule for the stream (Matching::Reserve) and Fulfil hands it
// here: no poll RPC, no separate "started" commit. A task from the backlog is started here as a
// poll would start it. Started tasks go out on the stream, several per message when they queue
// up behind a write. Completions are run on the executor with the checks the unary Respond*
// calls make (the task token's queue against the caller) and answered by seq.
//
// When the stream ends (the worker half-closes, breaks, or is refused), its waiting polls are
// cancelled; a task matching handed over but not yet started goes back (Matching::Return); a
// task already started (at schedule, or here) whose push is lost is retried after its timeout,
// exactly as a poll's lost answer is. Nothing on the stream holds a thread.
//
// Bounds: credits per stream (kMaxStreamCredits), streams per orchestrator and per queue
// (kMaxWorkerStreams, kMaxWorkerStreamsPerQueue),
// completions being worked on per stream (kMaxStreamCompletionsInFlight: past it the stream stops
// reading; a message carrying more ends the stream). Tasks queued for writing are bounded by the
// credits, answers by the completions.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "orchestrator/frontend/frontend_deps.h"
#include "orchestrator/rpc/authorizer.h"
#include "orchestrator/rpc/rpc_metrics.h"
#include "orchestrator/tasks/queued_task.h"

namespace kiln::orchestrator {

inline constexpr int kMaxStreamCredits = 1000;
inline constexpr int kMaxWorkerStreams = 1000;
// Of them, on one task queue (its namespace, name and kind): one caller with a token for its
// own queue cannot take every stream from other queues' workers.
inline constexpr int kMaxWorkerStreamsPerQueue = 250;
inline constexpr int kMaxStreamCompletionsInFlight = 1000;

// What a stream needs from the WorkflowService handler: the same checks and engine calls the
// polls and the Respond* calls use.
class WorkerStreamHost {
 public:
  virtual ~WorkerStreamHost() = default;
  // On gRPC's thread, once: the open request validated and its caller admitted.
  virtual absl::StatusOr<Principal> AdmitStream(grpc::CallbackServerContext* ctx,
                                                const api::WorkerStreamOpen& open) = 0;
  // On the executor: records the start of `task` for the stream's worker (as a retry of
  // `request_id`) and appends the task to `out`. NOT_FOUND or FAILED_PRECONDITION: stale.
  virtual absl::Status StartStreamTask(const QueuedTask& task, const std::string& request_id,
                                       const api::WorkerStreamOpen& open,
                                       api::WorkerStreamResponse* out) = 0;
  // On the executor: one completion, checked and run as its unary call would be.
  virtual api::WorkerStreamAnswer Complete(const Principal& principal,
                                           const api::WorkerStreamOpen& open,
                                           const api::WorkerStreamCompletion& completion) = 0;
};

// The streams open, in all and per task queue, against kMaxWorkerStreams and
// kMaxWorkerStreamsPerQueue.
class WorkerStreamCounts {
 public:
  // Counts a stream of `queue` (a key naming its namespace, name and kind), or refuses it
  // (kResourceExhausted) when the orchestrator or the queue holds its most.
  absl::Status Add(const std::string& queue);
  void Remove(const std::string& queue);

 private:
  absl::Mutex mu_;
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_queue_ ABSL_GUARDED_BY(mu_);
};

// Starts a WorkerStream call; returns its reactor. `counts` counts the streams open; it and
// everything else borrowed outlive the call.
grpc::ServerBidiReactor<api::WorkerStreamRequest, api::WorkerStreamResponse>* StartWorkerStream(
    grpc::CallbackServerContext* ctx, const FrontendDeps& deps, RpcMetrics* metrics,
    WorkerStreamHost* host, WorkerStreamCounts* counts);

}  // namespace kiln::orchestrator
