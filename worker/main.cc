// kiln-worker: the platform's control plane. Today it hosts the sample workflows and their
// activities on task queue "samples"; the project and deployment workflows, the BuildService
// API and the webhook endpoint join it in later issues. Parses flags and wires.
#include "common/config.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "samples/samples.h"
#include "sdk/activity_worker.h"
#include "sdk/connection.h"
#include "sdk/workflow_worker.h"

int main(int argc, char** argv) {
  kiln::BlockTerminationSignals();
  CLI::App app{"kiln-worker: Kiln's control plane (workflow code and control-plane activities)",
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
  std::string metrics_listen;
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address (empty: none)")
      ->envname("KILN_WORKER_METRICS")
      ->capture_default_str();
  std::string identity = "kiln-worker";
  app.add_option("--identity", identity, "Name this worker gives the orchestrator")
      ->envname("KILN_WORKER_IDENTITY")
      ->capture_default_str();
  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  kiln::ApplyCommonFlags(common);

  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = kiln::MetricsServer::Start(metrics_listen, registry);
  if (!metrics.ok()) {
    kiln::LogError("worker.start_failed", {{"status", metrics.status()}});
    return 1;
  }
  kiln::sdk::Connection connection(orchestrator);
  absl::Status health = connection.CheckHealth(absl::Seconds(connect_timeout_s));
  if (!health.ok()) {
    kiln::LogError("worker.connect_failed", {{"status", health}});
    return 1;
  }

  kiln::sdk::ActivityWorkerOptions activity_options;
  activity_options.identity = identity;
  activity_options.registry = registry.get();
  kiln::sdk::ActivityWorker activities(connection, kiln::samples::kTaskQueue, activity_options);
  absl::Status ready = kiln::samples::RegisterActivities(activities);
  if (ready.ok()) ready = activities.Start();
  if (!ready.ok()) {
    kiln::LogError("worker.start_failed", {{"status", ready}});
    return 1;
  }
  kiln::sdk::WorkflowWorkerOptions workflow_options;
  workflow_options.identity = identity;
  workflow_options.registry = registry.get();
  // Activities this worker runs are started eagerly by the workflow task's completion.
  workflow_options.eager_activities = &activities;
  kiln::sdk::WorkflowWorker workflows(connection, kiln::samples::kTaskQueue, workflow_options);
  kiln::samples::RegisterWorkflows(workflows);
  workflows.Start();
  kiln::LogInfo("worker.connected",
                {{"orchestrator", orchestrator}, {"task_queue", kiln::samples::kTaskQueue}});

  int signo = kiln::WaitForTerminationSignal();
  kiln::LogInfo("worker.stopping", {{"signal", signo}});
  workflows.Stop();
  activities.Stop();
  kiln::LogInfo("worker.stopped");
  return 0;
}
