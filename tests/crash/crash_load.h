// The crash matrix's workload, shared by the worker process it kills (crash_worker_main.cc) and
// the test that checks the results (crash_matrix_test.cc).
#pragma once

#include <string>

namespace kiln::crash {

inline constexpr char kCrashQueue[] = "crash";
inline constexpr char kSignalName[] = "go";
inline constexpr int kParentTimerMs = 800;
inline constexpr int kChildTimerMs = 300;
inline constexpr int kActivityWorkMs = 300;
// Workflow task timeout: a task held by a killed worker is handed out again after this.
inline constexpr int kTaskTimeoutS = 2;
// A build's heartbeat timeout: a build whose agent was killed goes to the next agent after this.
inline constexpr int kBuildHeartbeatTimeoutS = 3;
// Mixed's third input: "build" runs a podman build on the agent after the fetch.
inline constexpr char kBuildInput[] = "build";
inline constexpr char kBuiltMark[] = "built";
// What the matrix's repository holds: a Containerfile podman builds without a base image.
inline constexpr char kContainerfile[] = "FROM scratch\nCOPY README /README\n";

// The builder agent's project: it serves queue project/<id>.
inline constexpr char kAgentProject[] = "crash";
inline std::string AgentQueue() { return std::string("project/") + kAgentProject; }

inline std::string ChildWorkflowId(const std::string& parent_id) { return parent_id + "-child"; }
inline std::string SignalInput(const std::string& workflow_id) { return "sig-" + workflow_id; }
// What Mixed(workflow_id, repository, build) completes with once signalled
// SignalInput(workflow_id), `commit` being the repository's HEAD.
inline std::string ExpectedResult(const std::string& workflow_id, const std::string& commit,
                                  bool built) {
  std::string upper;
  for (char c : workflow_id + "-child") upper += (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
  return workflow_id + "/" + upper + "/" + SignalInput(workflow_id) + "/" + commit +
         (built ? std::string("/") + kBuiltMark : "");
}

}  // namespace kiln::crash
