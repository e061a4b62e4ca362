#include "sdk/connection.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include "absl/strings/str_cat.h"
#include "common/rpc_status.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace kiln::sdk {
namespace {

using Metadata = std::vector<std::pair<std::string, std::string>>;

// Adds the connection's metadata to each call's initial metadata.
class MetadataInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetadataInterceptor(const Metadata* metadata) : metadata_(metadata) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* sent = methods->GetSendInitialMetadata();
      for (const auto& [key, value] : *metadata_) sent->emplace(key, value);
    }
    methods->Proceed();
  }

 private:
  const Metadata* metadata_;
};

class MetadataInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit MetadataInterceptorFactory(Metadata metadata) : metadata_(std::move(metadata)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new MetadataInterceptor(&metadata_);
  }

 private:
  const Metadata metadata_;
};

}  // namespace

Connection::Connection(const std::string& address, ConnectionOptions options) : address_(address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect quickly after an orchestrator restart (gRPC's default backoff grows to 2 min).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Calls are retried by CallWithRetry (UNAVAILABLE, with backoff, request ids making it safe);
  // gRPC's own retry layer only added per-call work: without it the engine benchmark's process
  // spent ~4% less CPU per transition (docs/benchmarks-history.md).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  if (!options.token.empty()) {
    options.metadata.emplace_back("authorization", "Bearer " + options.token);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certs;
    ssl.pem_cert_chain = options.tls_cert_chain;
    ssl.pem_private_key = options.tls_private_key;
    credentials = grpc::SslCredentials(ssl);
  }
  if (options.metadata.empty()) {
    channel_ = grpc::CreateCustomChannel(address, credentials, args);
  } else {
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
    factories.push_back(std::make_unique<MetadataInterceptorFactory>(std::move(options.metadata)));
    channel_ = grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args,
                                                                       std::move(factories));
  }
  workflow_service_ = kiln::api::v1::WorkflowService::NewStub(channel_);
}

absl::Status Connection::CheckHealth(absl::Duration timeout) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  context.set_wait_for_ready(true);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(FromGrpc(status).code(),
                        absl::StrCat("orchestrator at ", address_, ": ", status.error_message()));
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat("orchestrator at ", address_, " is not serving"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::sdk
