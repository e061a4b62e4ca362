// The Temporal frontend calls the engine's WorkflowService handler directly, binding the
// handler's reactor as gRPC's callback server would: here against a fake handler, over a real
// gRPC connection on 127.0.0.1. The handler sees the Temporal call's own context; an answer it
// gives inline, before its method returns, or later from another thread reaches the caller;
// a caller that goes away cancels the engine call (its reactor's OnCancel, then OnDone).
#include "orchestrator/temporal/temporal_frontend.h"

#include <catch2/catch.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "temporal/api/workflowservice/v1/request_response.pb.h"

namespace kiln::orchestrator {
namespace {

namespace kapi = ::kiln::api::v1;
namespace twf = ::temporal::api::workflowservice::v1;

constexpr char kService[] = "/temporal.api.workflowservice.v1.WorkflowService/";
constexpr auto kWait = std::chrono::seconds(10);

// A reactor the test finishes itself; records its cancellation and its end.
class HeldReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit HeldReactor(struct FakeEngine* engine) : engine_(engine) {}
  void OnCancel() override;
  void OnDone() override;

 private:
  struct FakeEngine* engine_;
};

// The engine's handler, as far as the frontend's calls here go. GetSystemInfo answers inline
// (before its method returns) and records the caller's metadata; PollActivityTaskQueue and
// PollWorkflowTaskQueue hold their reactor for the test to finish or cancel.
struct FakeEngine final : public kapi::WorkflowService::CallbackService {
  grpc::ServerUnaryReactor* GetSystemInfo(grpc::CallbackServerContext* ctx,
                                          const kapi::GetSystemInfoRequest*,
                                          kapi::GetSystemInfoResponse*) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [key, value] : ctx->client_metadata()) {
        metadata[std::string(key.data(), key.size())] = std::string(value.data(), value.size());
      }
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* PollActivityTaskQueue(
      grpc::CallbackServerContext*, const kapi::PollActivityTaskQueueRequest*,
      kapi::PollActivityTaskQueueResponse* response) override {
    return Hold(response);
  }
  grpc::ServerUnaryReactor* PollWorkflowTaskQueue(
      grpc::CallbackServerContext*, const kapi::PollWorkflowTaskQueueRequest*,
      kapi::PollWorkflowTaskQueueResponse* response) override {
    return Hold(response);
  }

  grpc::ServerUnaryReactor* Hold(google::protobuf::Message* response) {
    std::lock_guard<std::mutex> lock(mu);
    held = new HeldReactor(this);
    held_response = response;
    changed.notify_all();
    return held;
  }
  template <typename Predicate>
  bool WaitFor(Predicate predicate) {
    std::unique_lock<std::mutex> lock(mu);
    return changed.wait_for(lock, kWait, predicate);
  }

  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, std::string> metadata;
  HeldReactor* held = nullptr;
  google::protobuf::Message* held_response = nullptr;
  bool cancelled = false;
  bool done = false;
};

void HeldReactor::OnCancel() {
  {
    std::lock_guard<std::mutex> lock(engine_->mu);
    engine_->cancelled = true;
  }
  Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the caller went away"));
}

void HeldReactor::OnDone() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->done = true;
  engine_->held = nullptr;
  engine_->changed.notify_all();
  delete this;
}

struct Harness {
  Harness() {
    TemporalFrontendOptions options;
    options.listen = "127.0.0.1:0";
    options.credentials = grpc::InsecureServerCredentials();
    auto started = TemporalFrontend::Start(options, &engine);
    REQUIRE(started.ok());
    frontend = *std::move(started);
    channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", frontend->port()),
                                  grpc::InsecureChannelCredentials());
    stub = std::make_unique<grpc::GenericStub>(channel);
  }
  ~Harness() { frontend->Shutdown(absl::ZeroDuration()); }

  // Calls `method` with `request`; returns its status, the answer parsed into `response`.
  grpc::Status Call(grpc::ClientContext* ctx, const std::string& method,
                    const google::protobuf::Message& request, google::protobuf::Message* response) {
    grpc::ByteBuffer request_bytes;
    bool own = false;
    REQUIRE(grpc::SerializationTraits<google::protobuf::Message>::Serialize(request, &request_bytes,
                                                                            &own)
                .ok());
    grpc::ByteBuffer response_bytes;
    std::mutex mu;
    std::condition_variable answered;
    std::optional<grpc::Status> status;
    stub->UnaryCall(ctx, kService + method, grpc::StubOptions(), &request_bytes, &response_bytes,
                    [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      status = std::move(s);
                      answered.notify_all();
                    });
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(answered.wait_for(lock, kWait, [&] { return status.has_value(); }));
    if (status->ok()) {
      REQUIRE(grpc::SerializationTraits<google::protobuf::Message>::Deserialize(&response_bytes,
                                                                                response)
                  .ok());
    }
    return *status;
  }

  FakeEngine engine;
  std::unique_ptr<TemporalFrontend> frontend;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
};

TEST_CASE("Temporal frontend: the engine's handler sees the caller's own context") {
  Harness h;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer token-1");
  ctx.AddMetadata("x-kiln-test", "seen");
  twf::DescribeNamespaceRequest request;
  request.set_namespace_("default");
  twf::DescribeNamespaceResponse response;
  // DescribeNamespace is answered after the engine admits the caller (its GetSystemInfo, which
  // the fake answers before its method returns).
  REQUIRE(h.Call(&ctx, "DescribeNamespace", request, &response).ok());
  CHECK(response.namespace_info().name() == "default");
  std::lock_guard<std::mutex> lock(h.engine.mu);
  CHECK(h.engine.metadata["authorization"] == "Bearer token-1");
  CHECK(h.engine.metadata["x-kiln-test"] == "seen");  // all of it, not a copy of the token
}

TEST_CASE("Temporal frontend: an engine answer given later from another thread is translated") {
  Harness h;
  grpc::ClientContext ctx;
  twf::PollActivityTaskQueueRequest request;
  request.set_namespace_("default");
  request.mutable_task_queue()->set_name("q");
  twf::PollActivityTaskQueueResponse response;
  bool reached = false;  // Catch's assertions stay on the test's thread
  std::thread engine_side([&] {
    reached = h.engine.WaitFor([&] { return h.engine.held != nullptr; });
    if (!reached) return;
    HeldReactor* reactor;
    {
      std::lock_guard<std::mutex> lock(h.engine.mu);
      auto* answer = static_cast<kapi::PollActivityTaskQueueResponse*>(h.engine.held_response);
      answer->set_task_token("token-7");
      answer->mutable_activity_type()->set_name("echo");
      reactor = h.engine.held;
    }
    reactor->Finish(grpc::Status::OK);
  });
  grpc::Status status = h.Call(&ctx, "PollActivityTaskQueue", request, &response);
  engine_side.join();
  REQUIRE(reached);
  REQUIRE(status.ok());
  CHECK(response.task_token() == "token-7");
  CHECK(response.activity_type().name() == "echo");
  CHECK(h.engine.WaitFor([&] { return h.engine.done; }));
  std::lock_guard<std::mutex> lock(h.engine.mu);
  CHECK(!h.engine.cancelled);
}

TEST_CASE("Temporal frontend: a caller that goes away cancels the engine call") {
  Harness h;
  grpc::ClientContext ctx;
  twf::PollWorkflowTaskQueueRequest request;
  request.set_namespace_("default");
  request.mutable_task_queue()->set_name("q");
  twf::PollWorkflowTaskQueueResponse response;
  bool reached = false;  // Catch's assertions stay on the test's thread
  std::thread caller_side([&] {
    reached = h.engine.WaitFor([&] { return h.engine.held != nullptr; });
    ctx.TryCancel();
  });
  grpc::Status status = h.Call(&ctx, "PollWorkflowTaskQueue", request, &response);
  caller_side.join();
  REQUIRE(reached);
  CHECK(status.error_code() == grpc::StatusCode::CANCELLED);
  // The engine's reactor was told (OnCancel), finished, and was let go (OnDone).
  REQUIRE(h.engine.WaitFor([&] { return h.engine.done; }));
  std::lock_guard<std::mutex> lock(h.engine.mu);
  CHECK(h.engine.cancelled);
}

}  // namespace
}  // namespace kiln::orchestrator
