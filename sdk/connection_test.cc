// Connection: the metadata it is given (a builder agent's bearer token) reaches the server
// with each call. The server is a real gRPC server in this process that records what it got.
#include <catch2/catch.hpp>

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sdk/connection.h"

namespace kiln::sdk {
namespace {

class RecordingHealth final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext* context, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    absl::MutexLock lock(&mu_);
    authorization_.clear();
    auto [begin, end] = context->client_metadata().equal_range("authorization");
    for (auto it = begin; it != end; ++it) {
      authorization_.emplace_back(it->second.data(), it->second.size());
    }
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
  std::vector<std::string> authorization() {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> authorization_ ABSL_GUARDED_BY(mu_);
};

TEST_CASE("A connection sends its metadata with every call, and none when given none") {
  RecordingHealth service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  REQUIRE(server != nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(port);

  Connection with_token(address, {.metadata = {{"authorization", "Bearer t0k3n"}}});
  REQUIRE(with_token.CheckHealth(absl::Seconds(10)).ok());
  REQUIRE(service.authorization() == std::vector<std::string>{"Bearer t0k3n"});
  REQUIRE(with_token.CheckHealth(absl::Seconds(10)).ok());
  REQUIRE(service.authorization() == std::vector<std::string>{"Bearer t0k3n"});

  Connection without(address);
  REQUIRE(without.CheckHealth(absl::Seconds(10)).ok());
  REQUIRE(service.authorization().empty());
  server->Shutdown();
}

}  // namespace
}  // namespace kiln::sdk
