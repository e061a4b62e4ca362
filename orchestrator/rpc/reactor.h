// The reactor plumbing the WorkflowService frontend is built from (gRPC's callback API).
//
// RefCountedReactor is the base of every call that answers later from an asynchronous path (a
// long poll waiting in matching, a history read waiting on a watcher): it frees itself only
// once gRPC is done with it and every path holding a reference has let go, and it finishes
// the call exactly once. RunOnExecutor and Reject finish a plain unary call on gRPC's default
// reactor; each records the call in RpcMetrics before the answer goes out, so that a caller
// reading the metrics after its answer finds its own call counted.
#pragma once

#include <atomic>
#include <functional>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/executor.h"
#include "orchestrator/rpc/rpc_metrics.h"

namespace kiln::orchestrator {

// The reference count of a reactor that answers from asynchronous paths: gRPC holds the first
// reference and drops it in OnDone; each path that may still touch the reactor (a waiting poll,
// a watcher, an alarm, queued work, a registry's caller) holds one more. Whoever drops the last
// frees the reactor. Shared by the unary reactors (RefCountedReactor) and LogService's streaming
// reader (logservice/log_reader.h).
class ReactorRefs {
 public:
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // A reference for a caller that found the reactor through a registry; false once the count
  // reached zero (the reactor is being freed and must not be touched).
  bool TryRef() {
    int refs = refs_.load(std::memory_order_relaxed);
    while (refs > 0) {
      if (refs_.compare_exchange_weak(refs, refs + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  // Drops a reference; true when it was the last, and the caller frees the reactor.
  [[nodiscard]] bool Unref() { return refs_.fetch_sub(1, std::memory_order_acq_rel) == 1; }

 private:
  std::atomic<int> refs_{1};  // gRPC's own, released in OnDone.
};

// A reactor that frees itself once gRPC is done with it AND every asynchronous path holding a
// reference (a waiting poll, a watcher, an alarm, queued work) has let go.
class RefCountedReactor : public grpc::ServerUnaryReactor {
 public:
  void Ref() { refs_.Ref(); }
  void Unref() {
    if (refs_.Unref()) delete this;
  }
  void OnDone() override { Unref(); }
  // Lets gRPC run OnDone and OnCancel on the thread where the call completes or is cancelled,
  // as it does for the default reactor of every plain unary call; otherwise it hands each to a
  // thread of its own executor: a thread wake-up per long poll, four per one-activity workflow
  // when the workers poll (three task polls and the result's history wait). Both reactions
  // qualify: OnDone drops gRPC's reference, and every OnCancel (a poll's, a history wait's) only
  // ends a wait under short locks and finishes the call; neither blocks.
  bool InternalInlineable() override { return true; }

 protected:
  // Finishes the call once; later calls are ignored. Returns whether this call finished it.
  // `write` fills the response first, under the same guard: once a call is finished (say by
  // a cancellation), gRPC may free its request and response, so nothing may touch them after.
  // `record` runs before the answer goes out, so that a caller reading the metrics after its
  // answer finds its own call counted.
  bool FinishOnce(const absl::Status& status, const std::function<void()>& write,
                  const std::function<void()>& record);
  bool finished();

 private:
  ReactorRefs refs_;
  absl::Mutex finish_mu_;
  bool finished_ ABSL_GUARDED_BY(finish_mu_) = false;
};

// Runs `work` on `executor` and finishes the call with its status, recording it as `method`
// with the time from now to the end of `work`. A full executor answers RESOURCE_EXHAUSTED.
grpc::ServerUnaryReactor* RunOnExecutor(grpc::CallbackServerContext* ctx, Executor& executor,
                                        Clock& clock, RpcMetrics& metrics, const char* method,
                                        std::function<absl::Status()> work);

// Finishes the call now with `status` (a refusal: no latency), recording it as `method`.
grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* ctx, RpcMetrics& metrics,
                                 const char* method, const absl::Status& status);

}  // namespace kiln::orchestrator

// Returns from the calling handler with the call refused unless `expr` is OK.
#define KILN_REJECT_IF_ERROR(ctx, metrics, method, expr)                        \
  do {                                                                          \
    absl::Status kiln_invalid_ = (expr);                                        \
    if (!kiln_invalid_.ok()) {                                                  \
      return ::kiln::orchestrator::Reject(ctx, metrics, method, kiln_invalid_); \
    }                                                                           \
  } while (0)
