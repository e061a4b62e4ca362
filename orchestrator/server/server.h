// The orchestrator process's wiring: opens the data directory, builds the engine's parts and
// serves them over gRPC (WorkflowService, health) and Prometheus /metrics.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/server.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace kiln::orchestrator {

struct ServerOptions {
  std::string data_dir;
  std::string listen = "127.0.0.1:7233";
  // Empty: no metrics endpoint.
  std::string metrics_listen = "127.0.0.1:9233";
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

  // Stops taking new calls, lets running ones finish for up to `grace`, then cancels the rest.
  void Shutdown(absl::Duration grace);

 private:
  Server() = default;

  ServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<grpc::Service> workflow_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace kiln::orchestrator
