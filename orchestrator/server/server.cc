#include "orchestrator/server/server.h"

#include <filesystem>
#include <system_error>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/logging.h"
#include "orchestrator/frontend/workflow_handler.h"

namespace kiln::orchestrator {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: must be set");
  auto listen = ParseHostPort(options.listen, "--listen");
  if (!listen.ok()) return listen.status();
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: cannot create '", options.data_dir, "': ", ec.message()));
  }

  std::unique_ptr<Server> server(new Server());
  server->options_ = options;
  server->registry_ = std::make_shared<prometheus::Registry>();
  auto metrics = MetricsServer::Start(options.metrics_listen, server->registry_);
  if (!metrics.ok()) return metrics.status();
  server->metrics_ = std::move(*metrics);

  server->workflow_service_ = std::make_unique<WorkflowHandler>(options.data_dir);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen->ToString(), grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->workflow_service_.get());
  server->grpc_server_ = builder.BuildAndStart();
  if (!server->grpc_server_ || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on '", options.listen,
                                               "' (address in use or not local?)"));
  }
  LogInfo("orchestrator.serving", {{"listen", absl::StrCat(listen->host, ":", server->port_)},
                                   {"metrics_port", server->metrics_port()},
                                   {"data_dir", options.data_dir}});
  return server;
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

void Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (grpc_server_) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
    grpc_server_->Wait();
  }
}

}  // namespace kiln::orchestrator
