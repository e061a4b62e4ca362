// The worker's side of WorkerStream (kiln.api.v1.WorkflowService): one long-lived stream on
// which the orchestrator pushes tasks while the worker has credits, and answers completions.
// Internal to the SDK: the workflow and activity workers use it instead of their polls when
// the orchestrator offers it (WorkflowWorkerOptions / ActivityWorkerOptions::use_stream).
//
// One reader thread per stream, whatever the number of tasks; writes go out from the caller's
// thread, and completions that queue up behind a write go out together in the next message.
// A broken stream is opened again with backoff, granting again the credits no task came for;
// completions waiting for an answer on the broken stream end with kUnavailable (the caller may
// answer with the unary call instead: the engine refuses a duplicate). A task pushed on a stream
// that breaks is started already: the engine retries it after its timeout.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include <grpcpp/client_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "sdk/connection.h"

namespace kiln::sdk::internal {

namespace api = ::kiln::api::v1;

// A refusal that asking again will not cure: the worker's credentials are refused, or (for an
// exclusive worker) another identity holds the queue. The activity worker's polls stop on it,
// and so does the stream (which also stops where the orchestrator has no stream).
bool RefusesWorker(const grpc::Status& status, bool exclusive);

// How many more of a worker's slots to lend the stream as credits (negative: to take back),
// given the `target` it should hold, the credits `lent` and not yet used by a task, and its
// `free` slots. Credits go in batches of a quarter of the target, not one message per task
// that ends: while the stream holds a batch or more, free slots wait until a batch of them
// has gathered; below that, each free slot goes at once (so the worker is never left short).
int CreditsToLend(int target, int lent, int free);

class WorkerStream {
 public:
  struct Handlers {
    // On the reader thread, one per task pushed (its credit is used up); must not wait for an
    // answer on this stream (the reader reads them). `alone`: the message carried no other task
    // (the handler may then run it on the reader thread, saving the wake of another).
    std::function<void(api::PollWorkflowTaskQueueResponse, bool alone)> workflow_task;
    std::function<void(api::PollActivityTaskQueueResponse)> activity_task;
    // The orchestrator does not offer the stream (kUnimplemented), has none left for it
    // (kResourceExhausted: poll instead) or refused it for good (credentials, exclusive queue
    // held by another): the stream has stopped; `status` says why. On the reader thread.
    std::function<void(const absl::Status& status)> stopped;
  };
  using Done = std::function<void(absl::StatusOr<api::WorkerStreamAnswer>)>;

  WorkerStream(Connection& connection, api::WorkerStreamOpen open, Handlers handlers);
  ~WorkerStream();
  WorkerStream(const WorkerStream&) = delete;
  WorkerStream& operator=(const WorkerStream&) = delete;

  void Start();
  // Ends the stream (half-close, then cancel if the orchestrator does not finish it soon) and
  // joins the reader. Completions still waiting end with kUnavailable.
  void Stop();

  // The worker can take `credits` more tasks (negative: fewer; a task already on its way
  // still comes).
  void Grant(int credits);
  // Sends a completion (its seq is set here); `done` runs once with the answer (on the reader
  // thread), or with kUnavailable when the stream broke or stopped first (on any thread).
  void Complete(api::WorkerStreamCompletion completion, Done done);
  // Complete, waiting for the answer; the answer's code as a status.
  absl::StatusOr<api::WorkerStreamAnswer> CompleteAndWait(api::WorkerStreamCompletion completion);

  // Credits granted that no task has used yet.
  int outstanding_credits();

 private:
  using Rw = grpc::ClientReaderWriter<api::WorkerStreamRequest, api::WorkerStreamResponse>;
  void Run();
  // One stream from open to end; its final status.
  grpc::Status RunOnce();
  // Appends to the next message and sends it unless another thread is sending.
  void Send(const std::function<void(api::WorkerStreamRequest&)>& fill);
  void FailWaiting();

  Connection& connection_;
  const api::WorkerStreamOpen open_;
  Handlers handlers_;
  std::thread reader_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  Rw* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Done> waiting_ ABSL_GUARDED_BY(mu_);
  // The next message, and whether a thread is writing (it sends what gathers meanwhile).
  api::WorkerStreamRequest pending_ ABSL_GUARDED_BY(mu_);
  bool sending_ ABSL_GUARDED_BY(mu_) = false;
  // Held while a Write runs; the stream is swapped only under both.
  absl::Mutex write_mu_;
};

}  // namespace kiln::sdk::internal
