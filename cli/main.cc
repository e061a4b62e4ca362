// kiln: the inspection and operations CLI. The workflow commands talk to the orchestrator
// (--address), the build platform's commands (project, deploy, deployment, preview) to
// kiln-worker's BuildService (--platform), both over gRPC with the same token
// (--token, --token-file, or the local orchestrator's admin credential). This file only
// defines the top-level flags and wires the command groups to a connection.
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "cli/completion.h"
#include "cli/help.h"
#include "cli/platform_commands.h"
#include "cli/rpc.h"
#include "cli/system_commands.h"
#include "cli/task_queue_commands.h"
#include "cli/terminal.h"
#include "cli/workflow_commands.h"
#include "common/auth/credentials.h"
#include "common/config.h"
#include "common/tls.h"
#include "sdk/connection.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln: operate Kiln: workflows, task queues, projects and deployments", "kiln"};
  // The global flags (--address, --token, --output, ...) are taken after a command too
  // (`kiln workflow list --address host:7233`): every command inherits this.
  app.fallthrough();
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  std::string address = "127.0.0.1:7233";
  app.add_option("--address", address, "Orchestrator gRPC address")
      ->envname("KILN_ADDRESS")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  std::string platform = "127.0.0.1:7300";
  // --platform was its first name, kept so scripts using it still run.
  app.add_option("--platform-address,--platform", platform,
                 "Build platform (kiln-worker's BuildService) gRPC address, for project, deploy "
                 "and preview")
      ->envname("KILN_PLATFORM_ADDRESS")
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
  std::string output = "table";
  app.add_option("--output,-o", output,
                 "table (for people) or json (for scripts: one object, or one array for lists, "
                 "in protobuf's JSON mapping)")
      ->envname("KILN_OUTPUT")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  bool no_color = false;
  app.add_flag("--no-color", no_color,
               "Drop the colour of build and workflow logs (also when NO_COLOR is set); kiln's "
               "own output has none");
  app.require_subcommand(1);
  kiln::cli::SetExamples(app, {"kiln workflow list --query 'ExecutionStatus = \"Running\"'",
                               "kiln --output json workflow describe --id build-42",
                               "kiln deploy trigger web --branch main --follow",
                               "kiln --address 10.0.0.5:7233 --tls-ca ca.pem health"});

  double health_timeout_s = 5;
  auto* health = app.add_subcommand("health", "Ask the orchestrator whether it serves");
  health->add_option("--timeout", health_timeout_s, "Seconds to wait for an answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  kiln::cli::SetExamples(*health, {"kiln health", "kiln health --timeout 30 && echo serving"});
  auto* info = app.add_subcommand("info", "Show the orchestrator's version and data directory");
  kiln::cli::SetExamples(*info, {"kiln info", "kiln -o json info"});
  std::string shell;
  auto* completion = app.add_subcommand("completion", "Print a shell completion script");
  kiln::cli::SetExamples(*completion, {"kiln completion bash > /etc/bash_completion.d/kiln",
                                       "source <(kiln completion bash)",
                                       "kiln completion zsh > \"${fpath[1]}/_kiln\""});
  completion->add_option("shell", shell, "bash or zsh")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh"}));
  std::string revoke_what;
  auto* token_command = app.add_subcommand("token", "Manage bearer tokens (admin)");
  token_command->require_subcommand(1);
  auto* revoke = token_command->add_subcommand(
      "revoke",
      "Refuse a token from now on, until it expires (admin). Give its id (kiln-orchestrator "
      "token prints it on stderr) or the token itself");
  kiln::cli::SetExamples(
      *revoke, {"kiln token revoke 3f9c2a...", "kiln token revoke \"$(cat leaked.token)\""});
  revoke->add_option("token", revoke_what, "The token's id, or the token")->required();
  kiln::cli::WorkflowCommands workflow(app);
  kiln::cli::TaskQueueCommands task_queue(app);
  kiln::cli::PlatformCommands platform_commands(app);

  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);
  if (output == "json") {
    workflow.SetJsonOutput();
    task_queue.SetJsonOutput();
    platform_commands.SetJsonOutput();
  }
  if (const char* env = std::getenv("NO_COLOR"); env != nullptr && *env != '\0') no_color = true;

  // Ids, names and payloads come from whoever started a workflow: a terminal gets them escaped.
  using kiln::cli::SafeTextBuf;
  SafeTextBuf out_buf(std::cout.rdbuf(), SafeTextBuf::Mode::kText);
  SafeTextBuf err_buf(std::cerr.rdbuf(), SafeTextBuf::Mode::kText);
  SafeTextBuf log_buf(std::cout.rdbuf(),
                      no_color ? SafeTextBuf::Mode::kLogPlain : SafeTextBuf::Mode::kLog);
  std::ostream out(&out_buf), err(&err_buf);
  // Logs stay byte-exact when they go to a file or a pipe, unless colour was turned off.
  std::ostream log(kiln::cli::StdoutIsTerminal() || no_color
                       ? static_cast<std::streambuf*>(&log_buf)
                       : std::cout.rdbuf());
  // Named in errors: what was tried, and the flag that chooses another.
  kiln::cli::Io io{out, err, log,
                   platform_commands.parsed()
                       ? "the build platform (kiln-worker's BuildService) at " + platform +
                             " (--platform-address, KILN_PLATFORM_ADDRESS)"
                       : "the orchestrator at " + address + " (--address, KILN_ADDRESS)"};
  if (output == "table" && kiln::cli::StdoutIsTerminal()) {
    io.terminal = std::cout.rdbuf();
    io.terminal_columns = kiln::cli::TerminalColumns();
  }
  if (completion->parsed()) {
    io.out << kiln::cli::CompletionScript(
        app, shell == "zsh" ? kiln::cli::Shell::kZsh : kiln::cli::Shell::kBash, "kiln");
    return kiln::cli::kExitOk;
  }
  absl::StatusOr<std::string> resolved = kiln::auth::ResolveClientToken(token, token_file);
  if (!resolved.ok()) {
    return kiln::cli::ReportError(
        io,
        std::string(resolved.status().message()) +
            " (pass --token or --token-file, or set KILN_DATA_DIR to the orchestrator's "
            "data directory)",
        kiln::cli::kExitUsage);
  }
  kiln::sdk::ConnectionOptions connection_options;
  connection_options.token = *std::move(resolved);
  absl::StatusOr<kiln::ClientTls> tls = kiln::ReadClientTls(tls_ca, tls_cert, tls_key);
  if (!tls.ok()) {
    return kiln::cli::ReportError(io, std::string(tls.status().message()), kiln::cli::kExitUsage);
  }
  connection_options.tls = tls->enabled;
  connection_options.tls_root_certs = std::move(tls->root_certs);
  connection_options.tls_cert_chain = std::move(tls->cert_chain);
  connection_options.tls_private_key = std::move(tls->private_key);
  if (platform_commands.parsed()) {
    kiln::sdk::Connection platform_connection(platform, std::move(connection_options));
    // Said plainly when nothing listens there (gRPC's own words name no flag).
    if (!platform_connection.channel()->WaitForConnected(std::chrono::system_clock::now() +
                                                         std::chrono::seconds(5))) {
      return kiln::cli::ReportError(
          io,
          "cannot reach " + io.server +
              " within 5s: start kiln-worker with its BuildService there, or point kiln at it",
          kiln::cli::kExitUnreachable);
    }
    auto build_service = kiln::platform::v1::BuildService::NewStub(platform_connection.channel());
    return platform_commands.Run(*build_service, io);
  }
  kiln::sdk::Connection connection(address, std::move(connection_options));
  if (health->parsed()) {
    return kiln::cli::CheckHealth(connection, absl::Seconds(health_timeout_s), io);
  }
  if (info->parsed()) return kiln::cli::ShowInfo(connection, io);
  if (revoke->parsed()) return kiln::cli::RevokeToken(connection, revoke_what, io);
  if (task_queue.parsed()) return task_queue.Run(connection.workflow_service(), io);
  if (workflow.parsed()) {
    auto log_service = kiln::api::v1::LogService::NewStub(connection.channel());
    return workflow.Run(connection.workflow_service(), *log_service, io);
  }
  return kiln::cli::kExitUsage;
}
