// The engine benchmark's workload: the workflows "a" (one activity), "b" (three sequential
// activities) and "scale" (a one-hour timer), the activity "Noop" (returns its input), and the
// hidden roles that serve them from processes of their own in the decoupled topology (a
// workflow worker, an activity worker), each started by the benchmark with --role.
#pragma once

#include <string>
#include <vector>

#include "sdk/activity_worker.h"
#include "sdk/workflow_worker.h"

namespace kiln::bench {

inline constexpr char kTaskQueue[] = "bench";
inline constexpr char kWorkflowWorkerRole[] = "workflow-worker";
inline constexpr char kActivityWorkerRole[] = "activity-worker";
// The environment variable that carries a role's token (kept off the command line).
inline constexpr char kTokenEnv[] = "KILN_BENCH_TOKEN";

// Registers the named workflows ("a", "b", "scale"); an error names one it does not know.
absl::Status RegisterWorkflows(sdk::WorkflowWorker& worker, const std::vector<std::string>& types);
absl::Status RegisterActivities(sdk::ActivityWorker& worker);

// Activity slots of a worker with `pollers` pollers: one for each of the 64 callers'
// activities, plus one per poller (a poller holds one while it waits), so no activity waits
// for a slot.
inline int ActivitySlots(int pollers) { return 64 + pollers; }

struct RoleOptions {
  std::string role;  // kWorkflowWorkerRole or kActivityWorkerRole
  std::string address;
  std::string task_queue = kTaskQueue;
  std::vector<std::string> workflows;  // the workflow worker's
  int pollers = 4;
  int cache_size = 5000;  // the workflow worker's
};

// Serves `options.role` until SIGTERM, then stops the worker and returns the exit code.
// Writes "ready\n" on RoleProcess::kReadyFd once the orchestrator answered a health check
// and the worker's pollers run. Call before this process starts any thread: the signals it
// waits for are blocked here so that every thread started later inherits the mask.
int RunRole(const RoleOptions& options);

}  // namespace kiln::bench
