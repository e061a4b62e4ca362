// A connection to the orchestrator: one gRPC channel with the engine's stubs, and a health
// check. The client, the workers and the CLI all start here.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"

namespace kiln::sdk {

struct ConnectionOptions {
  // The caller's token (common/auth/token.h), sent with every call as
  // `authorization: Bearer <token>`; empty sends none (refused unless the orchestrator runs with
  // --insecure-allow-anonymous).
  std::string token{};
  // TLS (PEM contents, not file names): set tls to speak TLS; tls_root_certs verifies the
  // server (empty: the system's roots); tls_cert_chain and tls_private_key are this client's
  // certificate for a server that asks for one (mutual TLS).
  bool tls = false;
  std::string tls_root_certs{};
  std::string tls_cert_chain{};
  std::string tls_private_key{};
  // Sent with every call on the channel, e.g. {"authorization", "Bearer <token>"}. Keys are
  // lower case (gRPC metadata).
  std::vector<std::pair<std::string, std::string>> metadata{};
};

class Connection {
 public:
  // Creates the channel (lazily connected: this does not fail for a down server).
  explicit Connection(const std::string& address, ConnectionOptions options = {});

  kiln::api::v1::WorkflowService::Stub& workflow_service() { return *workflow_service_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& address() const { return address_; }

  // Asks the standard gRPC health service; OK when the server reports SERVING within `timeout`.
  absl::Status CheckHealth(absl::Duration timeout);

 private:
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<kiln::api::v1::WorkflowService::Stub> workflow_service_;
};

}  // namespace kiln::sdk
