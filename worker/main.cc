// kiln-worker: the platform's control plane (workflow code, control-plane activities, the
// BuildService API, webhooks). Parses flags and wires.
#include "common/config.h"
#include "common/logging.h"
#include "common/signals.h"
#include "sdk/connection.h"

int main(int argc, char** argv) {
  kiln::BlockTerminationSignals();
  CLI::App app{"kiln-worker: Kiln's control plane (project and deployment workflows)",
               "kiln-worker"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  std::string orchestrator = "127.0.0.1:7233";
  app.add_option("--orchestrator", orchestrator, "Orchestrator gRPC address")
      ->envname("KILN_ORCHESTRATOR")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  double connect_timeout_s = 10;
  app.add_option("--connect-timeout", connect_timeout_s, "Seconds to wait for the orchestrator")
      ->envname("KILN_CONNECT_TIMEOUT")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);

  kiln::sdk::Connection connection(orchestrator);
  absl::Status health = connection.CheckHealth(absl::Seconds(connect_timeout_s));
  if (!health.ok()) {
    kiln::LogError("worker.connect_failed", {{"status", health}});
    return 1;
  }
  kiln::LogInfo("worker.connected", {{"orchestrator", orchestrator}});
  int signo = kiln::WaitForTerminationSignal();
  kiln::LogInfo("worker.stopped", {{"signal", signo}});
  return 0;
}
