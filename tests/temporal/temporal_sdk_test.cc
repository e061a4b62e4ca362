// Temporal's TypeScript SDK runs workflows on Kiln: temporal_sdk.js (a Temporal worker and
// client, the npm packages `make deps` installs) against a real kiln-orchestrator serving
// Temporal's API on --temporal-listen. The first workflow runs an activity, a timer, waits for
// a signal and answers queries; others retry and heartbeat activities, start a child, continue
// as new, and are signalled with start, terminated and cancelled; activities time out (each kind)
// and are cancelled; a workflow task fails and is retried; a completion that missed a signal is
// refused; search attributes are set, upserted, described and queried; a local activity outlives
// its workflow task (heartbeats); a memo is set and upserted; a call without a token
// is refused; a worker is restarted mid-workflow; the SDK's replayer checks the histories Kiln
// recorded; then Kiln's own CLI reads the run the SDK made.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/testutil/kiln_cli.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/tls.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

// The first of `candidates` that is an executable file, or "".
std::string FindExecutable(const std::vector<std::string>& candidates) {
  for (const std::string& path : candidates) {
    if (!path.empty() && ::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// Why the test cannot run here, or "" when it can.
std::string MissingPrerequisite(const std::string& node) {
  if (!KILN_TEMPORAL_BUILT_IN) {
    return "kiln-orchestrator was built without Temporal's API (no Temporal SDK at configure "
           "time: run make deps, then rebuild)";
  }
  if (node.empty()) return "no node (make deps installs nodejs)";
  if (!fs::exists(fs::path(KILN_TEMPORAL_NODE_MODULES) / "@temporalio" / "worker")) {
    return absl::StrCat("no Temporal SDK in ", KILN_TEMPORAL_NODE_MODULES, " (make deps)");
  }
  return "";
}

// The scripts beside the installed packages, as a project of the SDK's users has them (its
// bundler resolves @temporalio/workflow from the workflow file's folder up).
fs::path MakeProject(const std::string& dir) {
  const fs::path project = fs::path(dir) / "project";
  fs::create_directories(project);
  fs::create_directory_symlink(KILN_TEMPORAL_NODE_MODULES, project / "node_modules");
  for (const char* file : {"temporal_sdk.js", "temporal_tls.js", "workflows.js",
                           "temporal_protocol.js", "one_activity.js", "one_activity_workflow.js"}) {
    fs::copy_file(fs::path(KILN_TEMPORAL_TEST_SOURCE_DIR) / file, project / file);
  }
  return project;
}

// The node to run the scripts with, or "" after saying why the test cannot run here.
std::string NodeOrSkip() {
  const std::string node =
      FindExecutable({Env("KILN_NODE"), "/usr/bin/node", "/usr/local/bin/node"});
  if (std::string missing = MissingPrerequisite(node); !missing.empty()) {
    if (Env("KILN_REQUIRE_TEMPORAL") == "1") FAIL("KILN_REQUIRE_TEMPORAL=1 and " << missing);
    WARN("SKIPPED: " << missing);
    return "";
  }
  return node;
}

TEST_CASE(
    "Temporal's TypeScript SDK runs workflows with activities timers signals and queries on "
    "Kiln",
    "[temporal]") {
  const std::string node = NodeOrSkip();
  if (node.empty()) return;
  testutil::TempDir dir;
  const int temporal_port = testutil::FreePort();
  const std::string temporal_address = absl::StrCat("127.0.0.1:", temporal_port);
  testutil::OrchestratorProcess orchestrator(
      dir.path() + "/data",
      {"--temporal-listen", temporal_address, "--temporal-namespaces", "default,billing"});
  REQUIRE(orchestrator.Start().ok());

  const fs::path project = MakeProject(dir.path());

  std::string out;
  absl::StatusOr<int> code =
      testutil::RunCommand(node,
                           {(project / "temporal_sdk.js").string(), temporal_address,
                            orchestrator.admin_token(), "greeting-1"},
                           &out, absl::Minutes(2));
  REQUIRE(code.ok());
  INFO("temporal_sdk.js printed:\n" << out << "\norchestrator log:\n" << orchestrator.Log());
  REQUIRE(*code == 0);
  CHECK(absl::StrContains(out, R"("query":"waiting")"));
  CHECK(absl::StrContains(out, R"("result":"Hello, Kiln, approved by the test")"));
  CHECK(absl::StrContains(out, R"("status":"COMPLETED")"));
  CHECK(absl::StrContains(out, R"("task_queue":"temporal-sdk-test")"));
  CHECK(absl::StrContains(out, R"("final_query":"done")"));
  // Started, ..., ActivityTaskScheduled (10), TimerStarted (17), Signaled (26), Completed (2).
  CHECK(absl::StrContains(out, R"("events":[1,5,6,7,10,)"));
  CHECK(absl::StrContains(out, ",17,"));
  CHECK(absl::StrContains(out, ",26,"));
  CHECK(absl::StrContains(out, ",2]"));
  CHECK(!absl::StrContains(out, R"("sdk_flags":0,)"));
  // An activity failing its first attempt is retried (RespondActivityTaskFailed); one
  // heartbeats; a child workflow; continue-as-new; signal-with-start then terminate; start then
  // cancel (the run's timer and the run are cancelled); list with Temporal's field names; count.
  CHECK(absl::StrContains(out, R"("retries":{"attempts":2,"beats":3})"));
  CHECK(absl::StrContains(out, R"("parent":42,)"));
  CHECK(absl::StrContains(out, R"("looper":"looped in run after")"));
  CHECK(absl::StrContains(out, R"("terminated":"TERMINATED")"));
  CHECK(absl::StrContains(out, R"("canceled":"CancelledFailure")"));
  CHECK(absl::StrContains(out, R"("listed":["greeting-1:COMPLETED"])"));
  // Completed: greeting, retries, the child, its parent, the looper's last run.
  CHECK(absl::StrContains(out, R"("count":5,)"));
  // Activity timeouts: each kind reaches the workflow as a TimeoutFailure of its type.
  CHECK(absl::StrContains(out, R"("timeouts":{"start_to_close":"TimeoutFailure:START_TO_CLOSE",)"
                               R"("schedule_to_close":"TimeoutFailure:SCHEDULE_TO_CLOSE",)"
                               R"("heartbeat":"TimeoutFailure:HEARTBEAT"})"));
  // An activity cancelled by its workflow: the heartbeating activity sees it, answers
  // RespondActivityTaskCanceled, and the workflow sees a CancelledFailure; the history has
  // ActivityTaskCancelRequested (15) and ActivityTaskCanceled (16).
  CHECK(absl::StrContains(out, R"("cancelled":"ActivityFailure:CancelledFailure:true")"));
  CHECK(absl::StrContains(out, R"("activity_saw":"CancelledFailure")"));
  CHECK(absl::StrContains(out, ",15,11,16,"));
  // A workflow task that fails (RespondWorkflowTaskFailed, 9) is retried; the SDK leaves the
  // second failure to time out, which is not written (a retry is transient, as in Temporal);
  // the third attempt completes, and only then are its events written.
  CHECK(absl::StrContains(out, R"("flaky":"recovered")"));
  CHECK(absl::StrContains(out, R"("flaky_events":[1,5,6,9,5,6,7,2],"flaky_attempt":3,)"));
  // A signal arriving while the task that completes the run is open: the completion is refused
  // (UnhandledCommand, WorkflowTaskFailed then the signal), and the next task returns it.
  CHECK(absl::StrContains(out, R"("late":["a late signal"])"));
  CHECK(absl::StrContains(out, R"("late_events":[1,5,6,9,26,5,6,7,25,2])"));
  // Search attributes given at start (typed and the SDK's untyped form) and upserted by the
  // workflow: described, and found by a visibility query on them.
  CHECK(absl::StrContains(
      out,
      R"("search_attributes":{"CustomerId":"acme","Priority":3,"Region":"eu","Stage":"shipped"})"));
  CHECK(absl::StrContains(out, R"("tagged":["greeting-1-tagged"])"));
  // A local activity longer than the workflow task timeout (2 s): the SDK's workflow task
  // heartbeats (force_create_new_workflow_task) each record WorkflowTaskCompleted and get a
  // new task at once; the activity's marker (25) is recorded by the last.
  CHECK(absl::StrContains(out, R"("long_local":"paused 3500 ms")"));
  CHECK(absl::StrContains(out, R"("long_local_events":[1,5,6,7,5,6,7,)"));
  CHECK(absl::StrContains(out, R"(,5,6,7,25,2],)"));
  // A memo given at the start and changed by the workflow (upsertMemo: a field added, one
  // removed, recorded as WorkflowPropertiesModified, 46): the workflow, describe and list see
  // the same.
  CHECK(absl::StrContains(out, R"("memo_seen":{"stage":"done","team":"build"})"));
  CHECK(absl::StrContains(out, R"("memo_described":{"stage":"done","team":"build"})"));
  CHECK(absl::StrContains(out, R"("memo_listed":{"stage":"done","team":"build"})"));
  CHECK(absl::StrContains(out, R"("memo_events":[1,5,6,7,46,2])"));
  // ResetWorkflowExecution to that run's first workflow task: the new run has the copy, the
  // reset's WorkflowTaskFailed (9), and runs the workflow again from the start's memo.
  CHECK(absl::StrContains(out, R"("reset_result":{"stage":"done","team":"build"})"));
  CHECK(absl::StrContains(out, R"("reset_events":[1,5,6,9,5,6,7,46,2])"));
  // DescribeTaskQueue: the worker's poller; nothing waits.
  CHECK(absl::StrContains(out, R"("queue_pollers":"polled","queue_backlog":0)"));
  // Tokens are required on the Temporal port: a connection without one is refused
  // (UNAUTHENTICATED, 16).
  CHECK(absl::StrContains(out, R"("without_token":16,)"));
  // A worker restarted while the run waits: the new worker replays the run from its whole
  // history and finishes it. The SDK's replayer finds every history Kiln recorded
  // deterministic.
  CHECK(absl::StrContains(out, R"("restarted":"Hello, again, approved by a new worker")"));
  CHECK(absl::StrContains(
      out,
      R"("replayed":["ok","ok","ok","ok","ok","ok","ok","ok","ok","ok","ok","ok","ok","ok"])"));
  // What Kiln does not serve says so: NOT_FOUND (5) for a namespace it does not have,
  // UNIMPLEMENTED (12) naming a method it lacks.
  CHECK(absl::StrContains(out, R"("unknown_namespace":5)"));
  CHECK(absl::StrContains(
      out, R"("unimplemented":"12 UNIMPLEMENTED: ListSchedules is not implemented by Kiln's)"));
  CHECK(absl::StrContains(
      out,
      R"("unimplemented_named":["UpdateWorkflowExecution","CreateSchedule",)"
      R"("StartBatchOperation","PollNexusTaskQueue","DescribeDeployment","RegisterNamespace"])"));
  // --temporal-namespaces: each is described (REGISTERED, 1) and listed, runs in it are its own.
  CHECK(absl::StrContains(out, R"("billing":"billing:1")"));
  CHECK(absl::StrContains(out, R"("namespaces":["default","billing"])"));
  CHECK(absl::StrContains(out, R"("billing_run":"RUNNING")"));
  CHECK(absl::StrContains(out, R"("billing_elsewhere":"WorkflowNotFoundError")"));

  // Kiln's own CLI reads the run the Temporal SDK made, on the native port.
  REQUIRE(testutil::KilnAt(orchestrator.address(),
                           {"--token-file", orchestrator.admin_token_file(), "workflow", "show",
                            "--id", "greeting-1"},
                           &out) == 0);
  CHECK(absl::StrContains(out, "WorkflowExecutionStarted"));
  CHECK(absl::StrContains(out, "ActivityTaskCompleted"));
  CHECK(absl::StrContains(out, "TimerFired"));
  CHECK(absl::StrContains(out, "WorkflowExecutionSignaled"));
  CHECK(absl::StrContains(out, "WorkflowExecutionCompleted"));
  REQUIRE(orchestrator.Stop().ok());
}

TEST_CASE("Temporal's TypeScript SDK reaches Kiln over mutual TLS with a token", "[temporal]") {
  const std::string node = NodeOrSkip();
  if (node.empty()) return;
  testutil::TempDir dir;
  REQUIRE(testutil::MakeCertificate(dir.path(), "ca").ok());
  REQUIRE(testutil::MakeSignedCertificate(dir.path(), "ca", "server").ok());
  REQUIRE(testutil::MakeSignedCertificate(dir.path(), "ca", "client").ok());
  const std::string ca_pem = dir.path() + "/ca.pem";
  const std::string server_pem = dir.path() + "/server.pem";
  const std::string temporal_address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  // The Temporal listener takes the native listener's certificate and client CA.
  testutil::OrchestratorProcess orchestrator(
      dir.path() + "/data",
      {"--temporal-listen", temporal_address, "--tls-cert", server_pem, "--tls-key",
       dir.path() + "/server.key", "--tls-client-ca", ca_pem},
      sdk::ConnectionOptions{.tls = true,
                             .tls_root_certs = testutil::ReadFile(ca_pem),
                             .tls_cert_chain = testutil::ReadFile(dir.path() + "/client.pem"),
                             .tls_private_key = testutil::ReadFile(dir.path() + "/client.key")});
  REQUIRE(orchestrator.Start().ok());
  const fs::path project = MakeProject(dir.path());

  std::string out;
  absl::StatusOr<int> code = testutil::RunCommand(
      node,
      {(project / "temporal_tls.js").string(), temporal_address, orchestrator.admin_token(), ca_pem,
       dir.path() + "/client.pem", dir.path() + "/client.key"},
      &out, absl::Minutes(1));
  REQUIRE(code.ok());
  INFO("temporal_tls.js printed:\n" << out << "\norchestrator log:\n" << orchestrator.Log());
  REQUIRE(*code == 0);
  // The client (grpc-js) and the worker's connection (the SDK's core) get through with the
  // CA, a client certificate and a token.
  CHECK(absl::StrContains(out, R"("client":"default")"));
  CHECK(absl::StrContains(out, R"("worker":"sdk_metadata")"));
  // Without the client certificate, or in plain text: no connection; without the token:
  // UNAUTHENTICATED (16).
  CHECK(absl::StrContains(out, R"("without_certificate":"no connection")"));
  CHECK(absl::StrContains(out, R"("without_token":16)"));
  CHECK(absl::StrContains(out, R"("plain_text":"no connection")"));
  REQUIRE(orchestrator.Stop().ok());
}

// What one workflow of the SDK's costs the engine, by method: the SDK's protocol (start, two
// workflow tasks, the activity's answer, the client's wait for the result) and nothing more.
// The activity is dispatched eagerly, in the answer to the completion that scheduled it, never
// through PollActivityTaskQueue; the second workflow task reaches a waiting poll.
TEST_CASE("Temporal's TypeScript SDK costs the engine seven calls per one-activity workflow",
          "[temporal]") {
  const std::string node = NodeOrSkip();
  if (node.empty()) return;
  testutil::TempDir dir;
  const std::string temporal_address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data",
                                             {"--temporal-listen", temporal_address});
  REQUIRE(orchestrator.Start().ok());
  const fs::path project = MakeProject(dir.path());

  std::string out;
  absl::StatusOr<int> code = testutil::RunCommand(
      node,
      {(project / "temporal_protocol.js").string(), temporal_address, orchestrator.admin_token(),
       absl::StrCat("127.0.0.1:", orchestrator.metrics_port())},
      &out, absl::Minutes(1));
  REQUIRE(code.ok());
  INFO("temporal_protocol.js printed:\n" << out << "\norchestrator log:\n" << orchestrator.Log());
  REQUIRE(*code == 0);
  CHECK(absl::StrContains(out, R"({"per_workflow":{"GetWorkflowExecutionHistory":1,)"
                               R"("PollWorkflowTaskQueue":2,"RespondActivityTaskCompleted":1,)"
                               R"("RespondWorkflowTaskCompleted":2,"StartWorkflowExecution":1}})"));
  REQUIRE(orchestrator.Stop().ok());
}

}  // namespace
}  // namespace kiln
