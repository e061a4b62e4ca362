// Reset end to end: a real orchestrator, the C++ SDK's workflow worker in process, and the real
// `kiln` binary. A workflow that collects three signals gets two, is reset to its first workflow
// task with `kiln workflow reset`, and the new run replays both signals, takes the third and
// completes with all three; `--output json`, and the exit codes of a bad point, a bad flag and
// a missing workflow.
// GCC 12 reports a false -Wrestrict on inlined std::string copies in this file (GCC bug
// 105329); nothing here overlaps.
#pragma GCC diagnostic ignored "-Wrestrict"

#include <stdlib.h>

#include <google/protobuf/util/json_util.h>
#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/kiln_cli.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using sdk::Task;
using sdk::WorkflowContext;

std::string Text(const api::Payloads& p) {
  return p.payloads_size() ? sdk::FromPayloadAt<std::string>(p, 0).value_or("") : "";
}

// Collects three "push" signals and completes with them in order.
Task<absl::StatusOr<api::Payloads>> Collect3(WorkflowContext& ctx, api::Payloads input) {
  auto& pushes = ctx.GetSignalChannel("push");
  std::string received;
  for (int i = 0; i < 3; ++i) {
    api::Payloads push = co_await pushes.Receive();
    received += Text(push);
  }
  co_return sdk::ToPayloads(received);
}

struct Fixture {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data"};
  std::unique_ptr<sdk::WorkflowWorker> workflows;
  std::unique_ptr<sdk::Client> client;

  Fixture() {
    REQUIRE(orchestrator.Start().ok());
    // kiln finds the orchestrator's admin credential there: no --token below.
    ::setenv("KILN_DATA_DIR", (dir.path() + "/data").c_str(), 1);
    sdk::WorkflowWorkerOptions options;
    options.poll_timeout = absl::Seconds(5);
    workflows = std::make_unique<sdk::WorkflowWorker>(orchestrator.connection(), "q", options);
    workflows->Register("Collect3", Collect3);
    workflows->Start();
    client = std::make_unique<sdk::Client>(orchestrator.connection());
  }
  ~Fixture() {
    workflows->Stop();
    ::unsetenv("KILN_DATA_DIR");
  }

  // Runs `kiln --address <orchestrator> args...`; the exit code, stdout and stderr in `out`.
  int Kiln(std::vector<std::string> args, std::string* out) {
    return testutil::KilnAt(orchestrator.address(), std::move(args), out);
  }

  void Signal(const std::string& id, const std::string& value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id(id);
    request.set_signal_name("push");
    *request.mutable_input() = sdk::ToPayloads(value);
    api::SignalWorkflowExecutionResponse response;
    REQUIRE(orchestrator.connection()
                .workflow_service()
                .SignalWorkflowExecution(&ctx, request, &response)
                .ok());
  }

  api::History History(const std::string& id, const std::string& run) {
    return client->GetHistory({id, run}).value();
  }

  // Waits until the run has completed `n` workflow tasks.
  void WaitForCompletedTasks(const std::string& id, const std::string& run, int n) {
    REQUIRE(testutil::WaitFor(
        [&] {
          auto history = client->GetHistory({id, run});
          if (!history.ok()) return false;
          int completed = 0;
          for (const auto& e : history->events()) {
            completed += e.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED;
          }
          return completed >= n;
        },
        absl::Seconds(30)));
  }
};

TEST_CASE("kiln workflow reset: the new run replays the signals and completes with them") {
  Fixture f;
  sdk::StartWorkflowOptions options;
  options.id = "collect";
  options.task_queue = "q";
  const std::string old_run = f.client->StartWorkflow(options, "Collect3", {}).value().run_id;
  f.WaitForCompletedTasks("collect", old_run, 1);
  f.Signal("collect", "a");
  f.WaitForCompletedTasks("collect", old_run, 2);
  f.Signal("collect", "b");
  f.WaitForCompletedTasks("collect", old_run, 3);

  std::string out;
  REQUIRE(f.Kiln({"workflow", "reset", "--id", "collect", "--to", "first-workflow-task", "--reason",
                  "replay"},
                 &out) == 0);
  const std::string new_run(absl::StripAsciiWhitespace(out));
  INFO(out);
  REQUIRE(new_run.size() == 36);  // a UUID
  REQUIRE(new_run != old_run);

  // The old run was terminated, naming the new one.
  api::History old_history = f.History("collect", old_run);
  const auto& last = old_history.events(old_history.events_size() - 1);
  REQUIRE(last.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
  REQUIRE(last.workflow_execution_terminated_event_attributes().reason() ==
          absl::StrCat("reset to run ", new_run, ": replay"));

  // The new run has both signals already; the third completes it.
  f.WaitForCompletedTasks("collect", new_run, 1);
  f.Signal("collect", "c");
  auto result = f.client->GetResult({"collect", new_run}, absl::Seconds(30));
  REQUIRE(result.ok());
  REQUIRE(Text(*result) == "abc");

  // --output json, from the completed run's last workflow task: the same signals, the same end.
  REQUIRE(f.Kiln({"--output", "json", "workflow", "reset", "--id", "collect", "--run-id", new_run,
                  "--to", "last-workflow-task"},
                 &out) == 0);
  api::ResetWorkflowExecutionResponse json;
  INFO(out);
  REQUIRE(google::protobuf::util::JsonStringToMessage(out, &json).ok());
  REQUIRE(!json.run_id().empty());
  auto again = f.client->GetResult({"collect", json.run_id()}, absl::Seconds(30));
  REQUIRE(again.ok());
  REQUIRE(Text(*again) == "abc");

  // Exit codes: a point that is not a workflow task (2, the server's words), a --to that is
  // nothing (2, the flag's), a workflow that does not exist (3).
  REQUIRE(f.Kiln({"workflow", "reset", "--id", "collect", "--to", "1"}, &out) == 2);
  REQUIRE(absl::StrContains(out, "not a workflow task event"));
  REQUIRE(f.Kiln({"workflow", "reset", "--id", "collect", "--to", "yesterday"}, &out) == 2);
  REQUIRE(absl::StrContains(out, "last-workflow-task"));
  REQUIRE(f.Kiln({"workflow", "reset", "--id", "nobody", "--to", "last-workflow-task"}, &out) == 3);
  REQUIRE(f.Kiln({"workflow", "reset", "--help"}, &out) == 0);
  REQUIRE(absl::StrContains(out, "Examples:\n  kiln workflow reset --id "));
}

}  // namespace
}  // namespace kiln
