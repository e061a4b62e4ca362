// kiln: the inspection and operations CLI. Subcommands talk to the orchestrator over gRPC.
#include <iostream>

#include "absl/time/time.h"
#include "common/config.h"
#include "common/rpc_status.h"
#include "sdk/connection.h"

namespace {

int Health(kiln::sdk::Connection& connection, double timeout_s) {
  absl::Status status = connection.CheckHealth(absl::Seconds(timeout_s));
  if (!status.ok()) {
    std::cerr << "kiln: " << status.message() << "\n";
    return 1;
  }
  std::cout << "SERVING " << connection.address() << "\n";
  return 0;
}

int Info(kiln::sdk::Connection& connection) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  kiln::api::v1::GetSystemInfoResponse response;
  grpc::Status status = connection.workflow_service().GetSystemInfo(&context, {}, &response);
  if (!status.ok()) {
    std::cerr << "kiln: " << connection.address() << ": " << status.error_message() << "\n";
    return 1;
  }
  std::cout << "address:  " << connection.address() << "\n"
            << "version:  " << response.server_version() << "\n"
            << "data dir: " << response.data_dir() << "\n"
            << "started:  "
            << absl::FormatTime(absl::FromUnixSeconds(response.start_time().seconds()),
                                absl::UTCTimeZone())
            << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kiln: inspect Kiln workflows, histories and task queues", "kiln"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  std::string address = "127.0.0.1:7233";
  app.add_option("--address", address, "Orchestrator gRPC address")
      ->envname("KILN_ADDRESS")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  app.require_subcommand(1);

  double health_timeout_s = 5;
  auto* health = app.add_subcommand("health", "Ask the orchestrator whether it serves");
  health->add_option("--timeout", health_timeout_s, "Seconds to wait for an answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  auto* info = app.add_subcommand("info", "Show the orchestrator's version and data directory");

  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);

  kiln::sdk::Connection connection(address);
  if (health->parsed()) return Health(connection, health_timeout_s);
  if (info->parsed()) return Info(connection);
  return 2;
}
