#include "orchestrator/rpc/reactor.h"

#include <catch2/catch.hpp>

namespace kiln::orchestrator {
namespace {

class Probe final : public RefCountedReactor {
 public:
  explicit Probe(bool* freed) : freed_(freed) {}
  ~Probe() override { *freed_ = true; }
  void OnCancel() override {}

 private:
  bool* freed_;
};

TEST_CASE("a ref-counted reactor is freed by whoever drops the last reference") {
  bool freed = false;
  auto* reactor = new Probe(&freed);
  reactor->Ref();     // a path still waiting (a poll in matching, a watcher)
  reactor->OnDone();  // gRPC is done with it
  CHECK(!freed);
  reactor->Unref();
  CHECK(freed);
}

TEST_CASE("gRPC may run a ref-counted reactor's reactions where the call ends") {
  // Without it gRPC hands every long poll's OnDone to a thread of its executor: a wake-up per
  // call (docs/benchmarks-history.md, "The long polls' completions stay on gRPC's threads").
  bool freed = false;
  auto* reactor = new Probe(&freed);
  grpc::internal::ServerReactor* as_grpc_sees_it = reactor;
  CHECK(as_grpc_sees_it->InternalInlineable());
  reactor->OnDone();
  CHECK(freed);
}

}  // namespace
}  // namespace kiln::orchestrator
