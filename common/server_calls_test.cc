// Stopping a gRPC server (server_calls.h): waits for the calls in flight, not for idle clients.
#include "common/server_calls.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace kiln {
namespace {

// An idle client reads the server's GOAWAY only when its backup poller runs (5 s by default):
// a minute here, so a shutdown that waited for idle clients would show plainly. Set before
// anything in this binary starts gRPC (it reads the variable once, at its first use).
const bool kSlowBackupPoller = [] {
  ::setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "60000", 1);
  return true;
}();

class SlowCall;

// Calls "/t/fast" are answered at once; "/t/slow" when the test releases them or cancelled.
class Service final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override;

  void Arrived(SlowCall* call) {
    absl::MutexLock lock(&mu_);
    slow_ = call;
  }
  void Gone(SlowCall* call) {
    absl::MutexLock lock(&mu_);
    if (slow_ == call) slow_ = nullptr;
  }
  bool AwaitSlow(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](SlowCall** slow) { return *slow != nullptr; }, &slow_),
                                timeout);
  }
  void ReleaseSlow();

 private:
  absl::Mutex mu_;
  SlowCall* slow_ ABSL_GUARDED_BY(mu_) = nullptr;
};

class SlowCall final : public grpc::ServerGenericBidiReactor {
 public:
  SlowCall(Service* service, bool slow) : service_(service), slow_(slow) { StartRead(&buffer_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
    } else if (slow_) {
      service_->Arrived(this);
    } else {
      FinishOnce(grpc::Status::OK);
    }
  }
  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }
  void OnDone() override {
    service_->Gone(this);
    delete this;
  }
  void FinishOnce(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

 private:
  Service* const service_;
  const bool slow_;
  grpc::ByteBuffer buffer_;
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerGenericBidiReactor* Service::CreateReactor(grpc::GenericCallbackServerContext* ctx) {
  return new SlowCall(this, ctx->method() == "/t/slow");
}

void Service::ReleaseSlow() {
  absl::MutexLock lock(&mu_);
  if (slow_ != nullptr) slow_->FinishOnce(grpc::Status::OK);
}

struct Fixture {
  Fixture() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterCallbackGenericService(&service);
    calls.Install(builder);
    server = builder.BuildAndStart();
    REQUIRE(server != nullptr);
    for (int i = 0; i < 2; ++i) {
      // A connection of each channel's own (gRPC shares them between alike channels).
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      channels.push_back(grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                                   grpc::InsecureChannelCredentials(), args));
      stubs.push_back(std::make_unique<grpc::GenericStub>(channels.back()));
    }
  }

  // Starts a unary call on client `client`; its status is recorded when it ends.
  void Call(int client, const std::string& method) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    grpc::Slice byte("x", 1);
    grpc::ByteBuffer* request = &requests.emplace_back(&byte, 1);
    grpc::ByteBuffer* response = &responses.emplace_back();
    stubs[client]->UnaryCall(contexts.back().get(), method, {}, request, response,
                             [this, method](grpc::Status status) {
                               absl::MutexLock lock(&mu);
                               statuses[method] = status.error_code();
                             });
  }

  std::optional<grpc::StatusCode> AwaitStatus(const std::string& method) {
    absl::MutexLock lock(&mu);
    auto done = [&] { return statuses.contains(method); };
    mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
    if (!statuses.contains(method)) return std::nullopt;
    return statuses[method];
  }

  Service service;
  ServerCalls calls;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::deque<grpc::ByteBuffer> requests;
  std::deque<grpc::ByteBuffer> responses;
  absl::Mutex mu;
  absl::flat_hash_map<std::string, grpc::StatusCode> statuses ABSL_GUARDED_BY(mu);
};

TEST_CASE("Stopping a server waits for its calls in flight and not for idle clients") {
  Fixture f;
  f.Call(0, "/t/fast");  // Client 0 is now connected, and then idle.
  REQUIRE(f.AwaitStatus("/t/fast") == grpc::StatusCode::OK);
  f.Call(1, "/t/slow");
  REQUIRE(f.service.AwaitSlow(absl::Seconds(30)));
  // The fast call is counted until the server is done with it, which may be just after its
  // client has the answer.
  CHECK(f.calls.AwaitInFlightAtMost(1, absl::Seconds(30)) == 1);

  const absl::Time began = absl::Now();
  std::thread stopper([&] { f.calls.Shutdown(*f.server, absl::Seconds(60)); });
  // The call in flight is let finish: its answer is OK, not a cancellation.
  f.service.ReleaseSlow();
  CHECK(f.AwaitStatus("/t/slow") == grpc::StatusCode::OK);
  stopper.join();
  // Not the grace, nor the idle client's next look at its connection (a minute here).
  CHECK(absl::Now() - began < absl::Seconds(20));
  CHECK(f.calls.in_flight() == 0);
}

TEST_CASE("A call still running at the end of the grace is cancelled and the server stops") {
  Fixture f;
  f.Call(0, "/t/slow");
  REQUIRE(f.service.AwaitSlow(absl::Seconds(30)));
  f.calls.Shutdown(*f.server, absl::Milliseconds(200));
  // Cancelled at the server; the client may see its connection close first (UNAVAILABLE).
  std::optional<grpc::StatusCode> status = f.AwaitStatus("/t/slow");
  REQUIRE(status.has_value());
  CHECK((*status == grpc::StatusCode::CANCELLED || *status == grpc::StatusCode::UNAVAILABLE));
  CHECK(f.calls.in_flight() == 0);
}

}  // namespace
}  // namespace kiln
