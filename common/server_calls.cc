#include "common/server_calls.h"

#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/support/server_interceptor.h>

#include "common/rpc_parse_errors.h"

namespace kiln {
namespace {

// One per call: gRPC makes it when the call arrives and frees it with the call.
class CallCounter final : public grpc::experimental::Interceptor {
 public:
  explicit CallCounter(ServerCalls* calls) : calls_(calls) { calls_->Begin(); }
  ~CallCounter() override { calls_->End(); }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  ServerCalls* const calls_;
};

class CallCounterFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounterFactory(ServerCalls* calls) : calls_(calls) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new CallCounter(calls_);
  }

 private:
  ServerCalls* const calls_;
};

}  // namespace

void ServerCalls::Install(grpc::ServerBuilder& builder) {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<CallCounterFactory>(this));
  factories.push_back(UnparsableRequestAnswerer());
  builder.experimental().SetInterceptorCreators(std::move(factories));
}

void ServerCalls::Begin() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
}

void ServerCalls::End() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

int64_t ServerCalls::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

int64_t ServerCalls::AwaitInFlightAtMost(int64_t calls, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto at_most = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return in_flight_ <= calls; };
  mu_.AwaitWithTimeout(absl::Condition(&at_most), timeout);
  return in_flight_;
}

void ServerCalls::Shutdown(grpc::Server& server, absl::Duration grace) {
  const absl::Time deadline = absl::Now() + grace;
  // GOAWAY to every client and no new calls; the tag is published once the server is down.
  grpc_completion_queue* cq = grpc_completion_queue_create_for_pluck(nullptr);
  grpc_server_shutdown_and_notify(server.c_server(), cq, this);
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](int64_t* in_flight) { return *in_flight <= 0; }, &in_flight_),
                          deadline);
  }
  // What still runs past the grace is cancelled, and every connection closes now instead of
  // when its client next looks at it.
  grpc_server_cancel_all_calls(server.c_server());
  // grpc++'s own part of the shutdown (its callback bookkeeping); the core's is done or ending.
  server.Shutdown(std::chrono::system_clock::now());
  server.Wait();
  (void)grpc_completion_queue_pluck(cq, this, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr);
  grpc_completion_queue_shutdown(cq);
  while (
      grpc_completion_queue_pluck(cq, nullptr, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr).type !=
      GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

}  // namespace kiln
