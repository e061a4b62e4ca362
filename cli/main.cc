// kiln: the inspection and operations CLI. The workflow commands talk to the orchestrator
// (--address), the build platform's commands (project, deploy, deployment, preview) to
// kiln-worker's BuildService (--platform), both over gRPC with the same token
// (--token, --token-file, or the local orchestrator's admin credential). This file only
// defines the top-level flags and wires the command groups to a connection.
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/platform_commands.h"
#include "cli/system_commands.h"
#include "cli/terminal.h"
#include "cli/workflow_commands.h"
#include "common/auth/credentials.h"
#include "common/config.h"
#include "sdk/connection.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: inspect Kiln workflows, histories and task queues", "kiln"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  std::string address = "127.0.0.1:7233";
  app.add_option("--address", address, "Orchestrator gRPC address")
      ->envname("KILN_ADDRESS")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  std::string platform = "127.0.0.1:7300";
  app.add_option("--platform", platform, "Build platform (kiln-worker BuildService) gRPC address")
      ->envname("KILN_PLATFORM")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  std::string token;
  app.add_option(
         "--token", token,
         "Token presented to the orchestrator and the platform as a bearer token (mint one with "
         "`kiln-orchestrator token`)")
      ->envname("KILN_TOKEN");
  std::string token_file;
  app.add_option("--token-file", token_file,
                 "File holding the token (default: $KILN_DATA_DIR/admin.token, else "
                 "kiln-data/admin.token, the local orchestrator's admin credential)")
      ->envname("KILN_TOKEN_FILE");
  std::string tls_ca, tls_cert, tls_key;
  app.add_option("--tls-ca", tls_ca,
                 "Speak TLS, verifying the server with this PEM CA (the orchestrator's --tls-cert "
                 "when it is self-signed)")
      ->envname("KILN_TLS_CA");
  app.add_option("--tls-cert", tls_cert, "PEM client certificate, for mutual TLS (with --tls-key)")
      ->envname("KILN_CLIENT_TLS_CERT");
  app.add_option("--tls-key", tls_key, "PEM key of --tls-cert")->envname("KILN_CLIENT_TLS_KEY");
  app.require_subcommand(1);

  double health_timeout_s = 5;
  auto* health = app.add_subcommand("health", "Ask the orchestrator whether it serves");
  health->add_option("--timeout", health_timeout_s, "Seconds to wait for an answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  auto* info = app.add_subcommand("info", "Show the orchestrator's version and data directory");
  kiln::cli::WorkflowCommands workflow(app);
  kiln::cli::PlatformCommands platform_commands(app);

  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);

  // Ids, names and payloads come from whoever started a workflow: a terminal gets them escaped.
  using kiln::cli::SafeTextBuf;
  SafeTextBuf out_buf(std::cout.rdbuf(), SafeTextBuf::Mode::kText);
  SafeTextBuf err_buf(std::cerr.rdbuf(), SafeTextBuf::Mode::kText);
  SafeTextBuf log_buf(std::cout.rdbuf(), SafeTextBuf::Mode::kLog);
  std::ostream out(&out_buf), err(&err_buf);
  // Logs stay byte-exact when they go to a file or a pipe.
  std::ostream log(kiln::cli::StdoutIsTerminal() ? static_cast<std::streambuf*>(&log_buf)
                                                 : std::cout.rdbuf());
  const kiln::cli::Io io{out, err, log};
  absl::StatusOr<std::string> resolved = kiln::auth::ResolveClientToken(token, token_file);
  if (!resolved.ok()) return kiln::cli::ReportError(io, std::string(resolved.status().message()));
  kiln::sdk::ConnectionOptions connection_options;
  connection_options.token = *std::move(resolved);
  if (!tls_ca.empty() || !tls_cert.empty()) {
    connection_options.tls = true;
    for (auto [path, pem] : {std::pair{&tls_ca, &connection_options.tls_root_certs},
                             std::pair{&tls_cert, &connection_options.tls_cert_chain},
                             std::pair{&tls_key, &connection_options.tls_private_key}}) {
      if (path->empty()) continue;
      std::ifstream in(*path, std::ios::binary);
      std::ostringstream content;
      content << in.rdbuf();
      if (!in || content.str().empty()) {
        return kiln::cli::ReportError(io, "cannot read TLS file '" + *path + "'");
      }
      *pem = content.str();
    }
  }
  if (platform_commands.parsed()) {
    kiln::sdk::Connection platform_connection(platform, std::move(connection_options));
    // Said plainly when nothing listens there (gRPC's own words name no flag).
    if (!platform_connection.channel()->WaitForConnected(std::chrono::system_clock::now() +
                                                         std::chrono::seconds(5))) {
      return kiln::cli::ReportError(
          io, "cannot reach the build platform (kiln-worker's BuildService) at " + platform +
                  " (set --platform or KILN_PLATFORM)");
    }
    auto build_service = kiln::platform::v1::BuildService::NewStub(platform_connection.channel());
    return platform_commands.Run(*build_service, io);
  }
  kiln::sdk::Connection connection(address, std::move(connection_options));
  if (health->parsed()) {
    return kiln::cli::CheckHealth(connection, absl::Seconds(health_timeout_s), io);
  }
  if (info->parsed()) return kiln::cli::ShowInfo(connection, io);
  if (workflow.parsed()) {
    auto log_service = kiln::api::v1::LogService::NewStub(connection.channel());
    return workflow.Run(connection.workflow_service(), *log_service, io);
  }
  return 2;
}
