// The real `kiln` binary against a real orchestrator and an SDK worker in this process:
// `kiln workflow signal`, `query`, `cancel` and `stack`, in tables and with `--output json`, and
// their exit codes (0 ok, 1 failed, 2 usage, 3 not found, 4 unreachable). The workflow waits for
// a signal, then on an activity this test holds, so `stack` has both to show with their lines.
#include <stdlib.h>

#include <atomic>
#include <fstream>

#include <google/protobuf/util/json_util.h>
#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "kiln/api/v1/stack_trace.pb.h"
#include "sdk/activity_worker.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/kiln_cli.h"
#include "tests/testutil/orchestrator.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using testutil::BinaryPath;
using testutil::Lines;
using testutil::RunCommand;
using testutil::ScopedEnv;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int Kiln(const std::string& address, std::vector<std::string> args, std::string* out) {
  return testutil::KilnAt(address, std::move(args), out);
}

api::Payloads Json(const std::string& json) {
  api::Payloads payloads;
  auto* payload = payloads.add_payloads();
  (*payload->mutable_metadata())["encoding"] = "json/plain";
  payload->set_data(json);
  return payloads;
}

// The lines of the workflow's two awaits (set when its code runs, replays included).
std::atomic<int> signal_line{0};
std::atomic<int> activity_line{0};

// "Waiting": waits for signal "go" or a cancel request; then runs activity "hold" with the
// signal's input and completes with its result. Query "state" says where it is, as JSON.
sdk::Task<absl::StatusOr<api::Payloads>> Waiting(sdk::WorkflowContext& ctx, api::Payloads input) {
  auto state = std::make_shared<std::string>("waiting");
  ctx.SetQueryHandler("state", [state](const api::Payloads&) -> absl::StatusOr<api::Payloads> {
    return Json(absl::StrCat("{\"step\":\"", *state, "\"}"));
  });
  auto go = ctx.GetSignalChannel("go").Receive();
  signal_line = __LINE__ - 1;
  size_t first = co_await sdk::WhenAny(go, ctx.CancellationRequested());
  if (first == 1) co_return absl::CancelledError("canceled while waiting for go");
  *state = "holding";
  sdk::ActivityOptions options;
  options.activity_id = "hold-1";
  options.start_to_close_timeout = absl::Minutes(2);
  auto held = ctx.ExecuteActivity("hold", go.value(), options);
  activity_line = __LINE__ - 1;
  auto result = co_await held;
  if (!result.ok()) co_return result.status();
  co_return *result;
}

// Answers __stack_trace itself, as a Temporal SDK does: one JSON string.
sdk::Task<absl::StatusOr<api::Payloads>> OwnStack(sdk::WorkflowContext& ctx, api::Payloads input) {
  ctx.SetQueryHandler(sdk::kStackTraceQuery,
                      [](const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                        return Json("\"coroutine 1:\\n  waiting for never\"");
                      });
  co_return co_await ctx.GetSignalChannel("never").Receive();
}

// A real orchestrator, the admin credential for kiln, and a worker of queue "ops" running
// "Waiting" and the activity "hold" (held until released).
struct Env {
  Env() {
    REQUIRE(orchestrator.Start().ok());
    REQUIRE(activities
                .Register("hold",
                          [this](sdk::ActivityContext&,
                                 const api::Payloads& in) -> absl::StatusOr<api::Payloads> {
                            release.WaitForNotificationWithTimeout(absl::Seconds(60));
                            return in;
                          })
                .ok());
    REQUIRE(activities.Start().ok());
    workflows.Register("Waiting", Waiting);
    workflows.Register("OwnStack", OwnStack);
    workflows.Start();
  }
  ~Env() {
    if (!release.HasBeenNotified()) release.Notify();
    workflows.Stop();
    activities.Stop();
  }
  std::string address() const { return orchestrator.address(); }

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data"};
  ScopedEnv data_dir{"KILN_DATA_DIR", dir.path() + "/data"};
  absl::Notification release;
  sdk::ActivityWorker activities{orchestrator.connection(), "ops"};
  sdk::WorkflowWorker workflows{orchestrator.connection(), "ops", {}};
};

// Parses what `--output json workflow stack` printed (the payload as the SDK sent it).
api::WorkflowStackTrace ParseStack(const std::string& json) {
  api::WorkflowStackTrace trace;
  INFO(json);
  REQUIRE(google::protobuf::util::JsonStringToMessage(json, &trace).ok());
  return trace;
}

std::string Where(int line) {
  return absl::StrCat("tests/integration/cli_workflow_ops_test.cc:", line, " in Waiting");
}

TEST_CASE("kiln workflow stack signal query and cancel act on a running SDK workflow") {
  Env env;
  const std::string address = env.address();
  std::string out;
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "ops-1", "--type", "Waiting", "--task-queue", "ops"},
               &out) == 0);
  const std::string run_id(absl::StripAsciiWhitespace(out));

  // stack: the signal wait and the cancellation wait (WhenAny), each with its line.
  REQUIRE(testutil::WaitFor(
      [&] {
        return Kiln(address, {"workflow", "stack", "--id", "ops-1"}, &out) == 0 &&
               Contains(out, "Waiting on (2):");
      },
      absl::Seconds(30)));
  INFO(out);
  std::vector<std::string> lines = Lines(out);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == "Workflow ops-1 (type Waiting, run " + run_id + ")");
  CHECK(absl::StartsWith(lines[2], "  KIND"));
  CHECK(Contains(lines[3], "signal "));
  CHECK(Contains(lines[3], "name=go"));
  CHECK(absl::EndsWith(lines[3], Where(signal_line)));
  CHECK(Contains(lines[4], "cancellation"));
  CHECK(absl::EndsWith(lines[4], Where(signal_line + 2)));
  REQUIRE(Kiln(address,
               {"--output", "json", "workflow", "stack", "--id", "ops-1", "--run-id", run_id},
               &out) == 0);
  api::WorkflowStackTrace trace = ParseStack(out);
  CHECK(trace.run_id() == run_id);
  REQUIRE(trace.pending_size() == 2);
  CHECK(trace.pending(0).kind() == api::AWAIT_KIND_SIGNAL);
  CHECK(trace.pending(0).signal_name() == "go");
  CHECK(trace.pending(0).awaited());
  CHECK(trace.pending(0).location().line() == signal_line);
  CHECK(trace.pending(0).location().file() == "tests/integration/cli_workflow_ops_test.cc");

  // query: the handler's JSON answer, as text and as JSON; an unknown query fails (exit 1).
  REQUIRE(Kiln(address, {"workflow", "query", "--id", "ops-1", "--type", "state"}, &out) == 0);
  CHECK(out == "{\"step\":\"waiting\"}\n");
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "query", "--id", "ops-1", "--type", "state"},
               &out) == 0);
  CHECK(out == "{\"step\":\"waiting\"}\n");
  REQUIRE(Kiln(address, {"workflow", "query", "--id", "ops-1", "--type", "nope"}, &out) == 1);
  CHECK(absl::StartsWith(out, "kiln: query 'nope' of workflow ops-1 failed in the worker: "));
  CHECK(Contains(out, "has no query handler 'nope' (it has: state, the built-in __stack_trace)"));

  // signal, its input from a file: the workflow goes on to the activity.
  const std::string input_file = env.dir.path() + "/go.json";
  std::ofstream(input_file) << "\"main\"";
  REQUIRE(Kiln(address,
               {"workflow", "signal", "--id", "ops-1", "--name", "go", "--input-file", input_file},
               &out) == 0);
  CHECK(out == "signaled workflow ops-1 with go\n");

  // stack: now the activity, with its type, id and line.
  REQUIRE(testutil::WaitFor(
      [&] {
        return Kiln(address, {"workflow", "stack", "--id", "ops-1"}, &out) == 0 &&
               Contains(out, "activity");
      },
      absl::Seconds(30)));
  lines = Lines(out);
  INFO(out);
  REQUIRE(lines.size() == 7);
  CHECK(lines[1] == "Waiting on (1):");
  CHECK(Contains(lines[3], "activity  type=hold activity_id=hold-1  " + Where(activity_line)));
  // The cancellation future WhenAny waited on is still there, but nothing awaits it now.
  CHECK(lines[4] == "Started, not awaited now (1):");
  CHECK(Contains(lines[6], "cancellation"));
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "stack", "--id", "ops-1"}, &out) == 0);
  trace = ParseStack(out);
  REQUIRE(trace.pending_size() == 2);
  CHECK_FALSE(trace.pending(1).awaited());
  CHECK(trace.pending(0).awaited());
  CHECK(trace.pending(0).kind() == api::AWAIT_KIND_ACTIVITY);
  CHECK(trace.pending(0).activity_type() == "hold");
  CHECK(trace.pending(0).activity_id() == "hold-1");
  CHECK(trace.pending(0).location().line() == activity_line);
  REQUIRE(Kiln(address, {"workflow", "query", "--id", "ops-1", "--type", "state"}, &out) == 0);
  CHECK(out == "{\"step\":\"holding\"}\n");

  // A signal nothing waits for, as JSON.
  REQUIRE(Kiln(address,
               {"--output", "json", "workflow", "signal", "--id", "ops-1", "--run-id", run_id,
                "--name", "extra", "--input", "x y"},
               &out) == 0);
  CHECK(out ==
        "{\"workflowId\": \"ops-1\", \"runId\": \"" + run_id + "\", \"signalName\": \"extra\"}\n");

  // The activity returns the signal's input: the workflow's result.
  env.release.Notify();
  REQUIRE(Kiln(address, {"workflow", "result", "--id", "ops-1", "--timeout", "30s"}, &out) == 0);
  CHECK(out == "\"main\"\n");
  REQUIRE(Kiln(address, {"workflow", "stack", "--id", "ops-1"}, &out) == 0);
  CHECK(Contains(out, "Waiting on nothing"));

  // cancel: the waiting workflow hears it and ends canceled; as text, then as JSON.
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "ops-2", "--type", "Waiting", "--task-queue", "ops"},
               &out) == 0);
  REQUIRE(Kiln(address, {"workflow", "cancel", "--id", "ops-2", "--reason", "not needed"}, &out) ==
          0);
  CHECK(absl::StartsWith(out, "cancel requested for workflow ops-2 (its code decides"));
  REQUIRE(Kiln(address, {"workflow", "result", "--id", "ops-2", "--timeout", "30s"}, &out) == 1);
  CHECK(out == "kiln: workflow ops-2 was canceled\n");
  REQUIRE(Kiln(address, {"workflow", "describe", "--id", "ops-2"}, &out) == 0);
  CHECK(Contains(out, "Status:          CANCELED\n"));
  REQUIRE(Kiln(address, {"workflow", "show", "--id", "ops-2"}, &out) == 0);
  CHECK(Contains(out, "WorkflowExecutionCancelRequested"));
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "ops-3", "--type", "Waiting", "--task-queue", "ops"},
               &out) == 0);
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "cancel", "--id", "ops-3"}, &out) == 0);
  CHECK(out == "{\"workflowId\": \"ops-3\", \"runId\": \"\", \"reason\": \"\"}\n");
  REQUIRE(Kiln(address, {"workflow", "result", "--id", "ops-3", "--timeout", "30s"}, &out) == 1);

  // A closed run refuses a cancel and a signal (exit 1), saying what was tried.
  REQUIRE(Kiln(address, {"workflow", "cancel", "--id", "ops-2"}, &out) == 1);
  CHECK(absl::StartsWith(out, "kiln: cannot cancel workflow ops-2: "));
  CHECK(Contains(out, "kiln workflow describe --id ops-2"));
  REQUIRE(Kiln(address, {"workflow", "signal", "--id", "ops-2", "--name", "go"}, &out) == 1);
  CHECK(absl::StartsWith(out, "kiln: "));

  // Not found: exit 3 from each.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"workflow", "signal", "--id", "nope", "--name", "go"},
        {"workflow", "query", "--id", "nope", "--type", "state"},
        {"workflow", "cancel", "--id", "nope"},
        {"workflow", "stack", "--id", "nope"}}) {
    INFO(args[1]);
    REQUIRE(Kiln(address, args, &out) == 3);
    CHECK(out == "kiln: workflow nope not found\n");
  }

  // A stack trace that is not Kiln's (a workflow's own handler, or a Temporal SDK's text): shown
  // as the text it holds; --output json passes it through.
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "own", "--type", "OwnStack", "--task-queue", "ops"},
               &out) == 0);
  REQUIRE(testutil::WaitFor(
      [&] {
        return Kiln(address, {"workflow", "stack", "--id", "own"}, &out) == 0;
      },
      absl::Seconds(30)));
  CHECK(out == "coroutine 1:\n  waiting for never\n");
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "stack", "--id", "own"}, &out) == 0);
  CHECK(out == "\"coroutine 1:\\n  waiting for never\"\n");

  // No worker polls the queue: the query says so (exit 1) after --timeout.
  REQUIRE(
      Kiln(address,
           {"workflow", "start", "--id", "orphan", "--type", "Waiting", "--task-queue", "nobody"},
           &out) == 0);
  REQUIRE(Kiln(address, {"workflow", "stack", "--id", "orphan", "--timeout", "1s"}, &out) == 1);
  CHECK(absl::StartsWith(out,
                         "kiln: query '__stack_trace' of workflow orphan was not answered "
                         "within 1s: no worker on task queue nobody"));
  CHECK(Contains(out, "Start a worker"));
}

TEST_CASE("kiln workflow signal query cancel and stack refuse bad flags and say when unreachable") {
  std::string out;
  const std::string nowhere = "127.0.0.1:1";  // never contacted: parsing fails first
  REQUIRE(Kiln(nowhere, {"workflow", "signal", "--id", "w"}, &out) == 2);
  CHECK(Contains(out, "--name is required"));
  REQUIRE(
      Kiln(nowhere,
           {"workflow", "signal", "--id", "w", "--name", "go", "--input", "1", "--input-file", "f"},
           &out) == 2);
  CHECK(Contains(out, "excludes"));
  REQUIRE(Kiln(nowhere, {"workflow", "query", "--id", "w"}, &out) == 2);
  CHECK(Contains(out, "--type is required"));
  REQUIRE(Kiln(nowhere, {"workflow", "stack", "--id", "w", "--timeout", "soon"}, &out) == 2);
  REQUIRE(Kiln(nowhere, {"workflow", "cancel"}, &out) == 2);
  CHECK(Contains(out, "--id is required"));
  // Each --help has an example.
  for (const char* command : {"signal", "query", "cancel", "stack"}) {
    INFO(command);
    REQUIRE(Kiln(nowhere, {"workflow", command, "--help"}, &out) == 0);
    CHECK(Contains(out, std::string("Examples:\n  kiln workflow ") + command + " --id "));
  }
  // An --input-file that cannot be read: a usage error naming it, before any call.
  REQUIRE(Kiln(nowhere,
               {"workflow", "signal", "--id", "w", "--name", "go", "--input-file",
                "/nonexistent/input.json"},
               &out) == 2);
  CHECK(out ==
        "kiln: cannot read --input-file /nonexistent/input.json: check that the file exists and "
        "is readable\n");

  const std::string address = "127.0.0.1:" + std::to_string(testutil::FreePort());
  for (std::vector<std::string> args :
       {std::vector<std::string>{"workflow", "signal", "--id", "w", "--name", "go"},
        {"workflow", "query", "--id", "w", "--type", "state"},
        {"workflow", "cancel", "--id", "w"},
        {"workflow", "stack", "--id", "w"}}) {
    INFO(args[1]);
    REQUIRE(Kiln(address, args, &out) == 4);
    CHECK(Contains(out, "cannot reach the orchestrator at " + address));
  }
}

}  // namespace
}  // namespace kiln
