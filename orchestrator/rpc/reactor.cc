#include "orchestrator/rpc/reactor.h"

#include <utility>

#include "common/hop_trace.h"
#include "common/rpc_status.h"

namespace kiln::orchestrator {

bool RefCountedReactor::FinishOnce(const absl::Status& status, const std::function<void()>& write,
                                   const std::function<void()>& record) {
  {
    absl::MutexLock lock(&finish_mu_);
    if (finished_) return false;
    finished_ = true;
    if (write) write();
  }
  record();
  hoptrace::Mark("o.fin");
  Finish(ToGrpc(status));
  hoptrace::Mark("o.fin2");
  return true;
}

bool RefCountedReactor::finished() {
  absl::MutexLock lock(&finish_mu_);
  return finished_;
}

grpc::ServerUnaryReactor* RunOnExecutor(grpc::CallbackServerContext* ctx, Executor& executor,
                                        Clock& clock, RpcMetrics& metrics, const char* method,
                                        std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Time began = clock.Now();
  bool queued =
      executor.TrySubmit([reactor, &clock, &metrics, method, began, work = std::move(work)] {
        absl::Status status = work();
        metrics.Record(method, status, clock.Now() - began);
        reactor->Finish(ToGrpc(status));
      });
  if (!queued) {
    absl::Status status =
        absl::ResourceExhaustedError("orchestrator is overloaded: work queue full");
    metrics.Record(method, status, absl::ZeroDuration());
    reactor->Finish(ToGrpc(status));
  }
  return reactor;
}

grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* ctx, RpcMetrics& metrics,
                                 const char* method, const absl::Status& status) {
  metrics.Record(method, status, absl::ZeroDuration());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

}  // namespace kiln::orchestrator
