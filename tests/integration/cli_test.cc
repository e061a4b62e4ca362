// The real `kiln` binary against a real orchestrator and a test worker: `kiln workflow start`,
// `result`, `list`, `count`, `history`/`show` (also --follow while a run is open), `describe`,
// `terminate` and `task-queue describe`, in tables and with `--output json`, and the exit codes
// scripts rely on: 0 ok, 1 failed, 2 usage, 3 not found, 4 unreachable.
#include <stdlib.h>

#include <fstream>

#include <google/protobuf/util/json_util.h>
#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kiln/api/v1/workflow_service.pb.h"
#include "tests/testutil/kiln_cli.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

using testutil::BinaryPath;
using testutil::Lines;
using testutil::OrchestratorProcess;
using testutil::RunCommand;
using testutil::ScopedEnv;
using testutil::TestWorker;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int Kiln(const std::string& address, std::vector<std::string> args, std::string* out) {
  return testutil::KilnAt(address, std::move(args), out);
}

// Parses `json` into a message of type M, failing the test when it does not parse (an unknown
// field included): what `--output json` prints must read back as the API's own message.
template <class M>
M ParseJson(const std::string& json) {
  M message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  INFO(json);
  REQUIRE(status.ok());
  return message;
}

// The elements of what `--output json` prints for a list: "[", an object a line, "]".
std::vector<std::string> JsonArrayElements(const std::string& text) {
  std::vector<std::string> lines = Lines(text);
  INFO(text);
  REQUIRE(lines.size() >= 1);
  if (lines.size() == 1) {
    REQUIRE(lines[0] == "[]");
    return {};
  }
  REQUIRE(lines.front() == "[");
  REQUIRE(lines.back() == "]");
  std::vector<std::string> elements(lines.begin() + 1, lines.end() - 1);
  for (size_t i = 0; i + 1 < elements.size(); ++i) {
    REQUIRE(absl::EndsWith(elements[i], ","));
    elements[i].pop_back();
  }
  return elements;
}

TEST_CASE("kiln workflow commands drive and inspect workflows on a real orchestrator") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  const std::string address = orchestrator.address();
  // No --token anywhere below: kiln finds the orchestrator's admin credential in KILN_DATA_DIR.
  ScopedEnv data_dir("KILN_DATA_DIR", dir.path() + "/data");
  TestWorker worker(orchestrator.connection().channel(), "q");
  worker.Start();
  std::string out;

  // Start prints the run id; result waits for the close and prints the result data.
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "steps-cli", "--type", "steps", "--task-queue", "q",
                "--input", "2", "--run-timeout", "5m"},
               &out) == 0);
  const std::string run_id(absl::StripAsciiWhitespace(out));
  REQUIRE(run_id.size() == 36);  // a UUID
  REQUIRE(Kiln(address, {"workflow", "result", "--id", "steps-cli", "--timeout", "30s"}, &out) ==
          0);
  REQUIRE(out == "step-1@1\n");

  // List: a table with the run COMPLETED; filters and JSON.
  REQUIRE(Kiln(address, {"workflow", "list"}, &out) == 0);
  std::vector<std::string> rows = Lines(out);
  REQUIRE(rows.size() == 2);
  REQUIRE(absl::StartsWith(rows[0], "WORKFLOW ID  RUN ID"));
  REQUIRE(Contains(rows[0], "START (UTC)"));
  std::vector<std::string> row = absl::StrSplit(rows[1], ' ', absl::SkipEmpty());
  REQUIRE(row.size() == 9);  // the times are two words each
  REQUIRE(row[0] == "steps-cli");
  REQUIRE(row[1] == run_id);
  REQUIRE(row[2] == "steps");
  REQUIRE(row[3] == "COMPLETED");
  REQUIRE(row[8] == "17");
  REQUIRE(Kiln(address, {"workflow", "list", "--status", "running"}, &out) == 0);
  REQUIRE(Lines(out).size() == 1);  // the header alone
  REQUIRE(Kiln(address, {"workflow", "list", "--status", "completed", "--type", "steps", "--json"},
               &out) == 0);
  REQUIRE(Lines(out).size() == 1);
  REQUIRE(Contains(out, "\"workflowId\":\"steps-cli\""));
  REQUIRE(Contains(out, "\"status\":\"WORKFLOW_EXECUTION_STATUS_COMPLETED\""));

  // History: Started ... Completed, event ids 1..N without gaps.
  REQUIRE(Kiln(address, {"workflow", "history", "--id", "steps-cli"}, &out) == 0);
  std::vector<std::string> events = Lines(out);
  REQUIRE(events.size() == 4 + 2 * 6 + 1);  // start, 6 events a step, close
  for (size_t i = 0; i < events.size(); ++i) {
    INFO(events[i]);
    std::vector<std::string> fields = absl::StrSplit(events[i], ' ', absl::SkipEmpty());
    REQUIRE(fields.size() >= 3);
    int64_t id = 0;
    REQUIRE(absl::SimpleAtoi(fields[0], &id));
    REQUIRE(id == static_cast<int64_t>(i + 1));
    REQUIRE(absl::EndsWith(fields[1], "Z"));
  }
  REQUIRE(Contains(events.front(),
                   "  WorkflowExecutionStarted  type=steps task_queue=q input=2 run_timeout=5m"));
  REQUIRE(Contains(events[4], "ActivityTaskScheduled  activity_id=step-0 type=echo input=step-0"));
  REQUIRE(Contains(events.back(), "  WorkflowExecutionCompleted  result=step-1@1"));
  std::string history_text = out;
  // --follow on a closed run prints the same and ends; --json gives one event a line.
  REQUIRE(Kiln(address, {"workflow", "history", "--id", "steps-cli", "--follow"}, &out) == 0);
  REQUIRE(out == history_text);
  REQUIRE(Kiln(address, {"workflow", "history", "--id", "steps-cli", "--run", run_id, "--json"},
               &out) == 0);
  REQUIRE(Lines(out).size() == events.size());
  REQUIRE(Contains(Lines(out).front(), "\"eventType\":\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\""));

  // Describe, as text and as JSON.
  REQUIRE(Kiln(address, {"workflow", "describe", "--id", "steps-cli"}, &out) == 0);
  REQUIRE(Contains(out, "Run ID:          " + run_id + "\n"));
  REQUIRE(Contains(out, "Type:            steps\n"));
  REQUIRE(Contains(out, "Task queue:      q\n"));
  REQUIRE(Contains(out, "Status:          COMPLETED\n"));
  REQUIRE(Contains(out, "History length:  17\n"));
  REQUIRE_FALSE(Contains(out, "Pending"));
  REQUIRE(Kiln(address, {"workflow", "describe", "--id", "steps-cli", "--json"}, &out) == 0);
  REQUIRE(Contains(out, "\"status\": \"WORKFLOW_EXECUTION_STATUS_COMPLETED\""));

  // --output json: one object for describe, one array for list and show, each reading back as
  // the API's message.
  REQUIRE(Kiln(address, {"--output", "json", "workflow", "describe", "--id", "steps-cli"}, &out) ==
          0);
  auto described = ParseJson<api::v1::DescribeWorkflowExecutionResponse>(out);
  CHECK(described.workflow_execution_info().execution().run_id() == run_id);
  CHECK(described.workflow_execution_info().history_length() == 17);
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "list"}, &out) == 0);
  std::vector<std::string> listed = JsonArrayElements(out);
  REQUIRE(listed.size() == 1);
  CHECK(ParseJson<api::v1::WorkflowExecutionInfo>(listed[0]).status() ==
        api::v1::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "list", "--status", "running"}, &out) == 0);
  CHECK(out == "[]\n");
  REQUIRE(Kiln(address, {"--output", "json", "workflow", "show", "--id", "steps-cli"}, &out) == 0);
  std::vector<std::string> shown = JsonArrayElements(out);
  REQUIRE(shown.size() == events.size());
  CHECK(ParseJson<api::v1::HistoryEvent>(shown.front()).event_id() == 1);
  CHECK(ParseJson<api::v1::HistoryEvent>(shown.back()).event_type() ==
        api::v1::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  // `show` is `history` under Temporal's name.
  REQUIRE(Kiln(address, {"workflow", "show", "--id", "steps-cli"}, &out) == 0);
  CHECK(out == history_text);

  // A workflow that sleeps for an hour: described with its timer, followed while open, and
  // terminated.
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "timer-cli", "--type", "timer", "--task-queue", "q",
                "--input", "3600"},
               &out) == 0);
  REQUIRE(testutil::WaitFor(
      [&] {
        return Kiln(address, {"workflow", "describe", "--id", "timer-cli"}, &out) == 0 &&
               Contains(out, "Pending timers (1):");
      },
      absl::Seconds(30)));
  REQUIRE(Contains(out, "Status:          RUNNING\n"));
  REQUIRE(Contains(out, "  sleep     "));
  REQUIRE(Kiln(address,
               {"workflow", "start", "--id", "timer-cli", "--type", "timer", "--task-queue", "q"},
               &out) == 1);
  REQUIRE(absl::StartsWith(out, "kiln: "));
  REQUIRE(Kiln(address, {"workflow", "result", "--id", "timer-cli", "--timeout", "500ms"}, &out) ==
          1);
  REQUIRE(out == "kiln: workflow timer-cli did not close within 500ms\n");

  auto follow = testutil::Process::Start(
      BinaryPath("kiln"), {"--address", address, "workflow", "history", "--id", "timer-cli", "-f"},
      dir.path() + "/follow.log");
  REQUIRE(follow.ok());
  REQUIRE(testutil::WaitFor([&] { return Contains((*follow)->Output(), "TimerStarted"); },
                            absl::Seconds(30)));
  REQUIRE((*follow)->Running());
  REQUIRE(Kiln(address,
               {"workflow", "terminate", "--id", "timer-cli", "--reason", "no longer needed"},
               &out) == 0);
  REQUIRE(out == "terminated workflow timer-cli\n");
  REQUIRE((*follow)->Wait(absl::Seconds(30)).value() == 0);
  std::vector<std::string> followed = Lines((*follow)->Output());
  REQUIRE(Contains(followed.front(), "WorkflowExecutionStarted  type=timer task_queue=q"));
  REQUIRE(Contains((*follow)->Output(), "TimerStarted  timer_id=sleep timeout=1h"));
  REQUIRE(Contains(followed.back(), "  WorkflowExecutionTerminated  reason=\"no longer needed\""));

  REQUIRE(Kiln(address, {"workflow", "describe", "--id", "timer-cli"}, &out) == 0);
  REQUIRE(Contains(out, "Status:          TERMINATED\n"));
  REQUIRE(Kiln(address, {"workflow", "result", "--id", "timer-cli"}, &out) == 1);
  REQUIRE(out == "kiln: workflow timer-cli was terminated: no longer needed\n");
  REQUIRE(Kiln(address, {"workflow", "list", "--status", "terminated"}, &out) == 0);
  REQUIRE(Lines(out).size() == 2);
  REQUIRE(Contains(Lines(out)[1], "timer-cli"));

  // Count: all, by query, grouped by status, and as JSON.
  REQUIRE(Kiln(address, {"workflow", "count"}, &out) == 0);
  CHECK(out == "2\n");
  REQUIRE(Kiln(address, {"workflow", "count", "--query", "WorkflowType = \"timer\""}, &out) == 0);
  CHECK(out == "1\n");
  REQUIRE(Kiln(address, {"workflow", "count", "--group-by", "status"}, &out) == 0);
  CHECK(Lines(out) == std::vector<std::string>{"STATUS      COUNT", "Completed   1",
                                               "Terminated  1", "Total       2"});
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "count", "--group-by", "status"}, &out) == 0);
  CHECK(out ==
        "{\n \"count\": \"2\",\n \"groups\": [\n  {\"status\": \"Completed\", \"count\": "
        "\"1\"},\n  {\"status\": \"Terminated\", \"count\": \"1\"}\n ]\n}\n");
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "count", "--query", "WorkflowType = \"x\""},
               &out) == 0);
  CHECK(out == "{\n \"count\": \"0\"\n}\n");

  // Exit codes: 3 not found, 2 a query the server refuses, 1 a call refused for other reasons.
  REQUIRE(Kiln(address, {"workflow", "describe", "--id", "no-such-workflow"}, &out) == 3);
  REQUIRE(out == "kiln: workflow no-such-workflow not found\n");
  REQUIRE(Kiln(address, {"workflow", "show", "--id", "no-such-workflow"}, &out) == 3);
  REQUIRE(Kiln(address, {"workflow", "list", "--query", "NoSuchField ="}, &out) == 2);
  REQUIRE(absl::StartsWith(out, "kiln: "));
  REQUIRE(Kiln(address, {"workflow", "count", "--query", "("}, &out) == 2);
  REQUIRE(Kiln(address, {"workflow", "terminate", "--id", "timer-cli"}, &out) == 1);
  REQUIRE(absl::StartsWith(out, "kiln: "));

  // For scripts: start and terminate answer JSON too.
  REQUIRE(Kiln(address,
               {"-o", "json", "workflow", "start", "--id", "json-cli", "--type", "timer",
                "--task-queue", "q", "--input", "3600"},
               &out) == 0);
  CHECK(Contains(out, "\"runId\": \""));
  CHECK(Contains(out, "\"started\": true"));
  REQUIRE(Kiln(address, {"-o", "json", "workflow", "terminate", "--id", "json-cli"}, &out) == 0);
  CHECK(out == "{\"workflowId\": \"json-cli\", \"runId\": \"\", \"terminated\": true}\n");
  REQUIRE(worker.errors() == 0);
  worker.Stop();
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("kiln shows control characters in ids escaped so they cannot steer the terminal") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  // An id that would retitle the window, ring the bell and clear the screen.
  ScopedEnv data_dir("KILN_DATA_DIR", dir.path() + "/data");  // the admin credential
  const std::string evil = "evil\x1b]0;owned\x07\x1b[2J";
  auto& stub = orchestrator.connection().workflow_service();
  REQUIRE(testutil::StartWorkflow(stub, evil, "timer", "q", "3600").ok());
  std::string out;
  for (std::vector<std::string> args : {std::vector<std::string>{"workflow", "list"},
                                        {"workflow", "describe", "--id", evil},
                                        {"workflow", "history", "--id", evil}}) {
    INFO(args[1]);
    REQUIRE(Kiln(orchestrator.address(), args, &out) == 0);
    CHECK(out.find('\x1b') == std::string::npos);
    CHECK(out.find('\x07') == std::string::npos);
    if (args[1] != "history") CHECK(Contains(out, "evil\\x1b]0;owned\\x07\\x1b[2J"));
  }
  // Errors that name the id are escaped too.
  REQUIRE(Kiln(orchestrator.address(), {"workflow", "describe", "--id", evil + "x"}, &out) != 0);
  CHECK(out.find('\x1b') == std::string::npos);
}

TEST_CASE("kiln refuses bad flag values with exit code 2 and names the value") {
  std::string out;
  const std::string nowhere = "127.0.0.1:1";  // never contacted: parsing fails first
  REQUIRE(Kiln(nowhere, {"workflow", "result", "--id", "w", "--timeout", "10parsecs"}, &out) == 2);
  REQUIRE(Contains(out, "--timeout: '10parsecs' is not a duration"));
  REQUIRE(Kiln(nowhere, {"workflow", "list", "--status", "bogus"}, &out) == 2);
  REQUIRE(Contains(out, "'bogus' is not a workflow status"));
  REQUIRE(Kiln(nowhere, {"workflow", "list", "--limit", "many"}, &out) == 2);
  REQUIRE(Contains(out, "many"));
  REQUIRE(Kiln(nowhere, {"workflow", "describe"}, &out) == 2);
  REQUIRE(Contains(out, "--id is required"));
  REQUIRE(Kiln(nowhere, {"workflow", "--help"}, &out) == 0);
  REQUIRE(Contains(out, "terminate"));
}

TEST_CASE("kiln says what it tried and exits 4 when the orchestrator is not there") {
  std::string out;
  const std::string address = "127.0.0.1:" + std::to_string(testutil::FreePort());
  for (std::vector<std::string> args : {std::vector<std::string>{"workflow", "list"},
                                        {"workflow", "describe", "--id", "w"},
                                        {"task-queue", "describe", "q"},
                                        {"info"},
                                        {"health", "--timeout", "1"}}) {
    INFO(args[0]);
    REQUIRE(Kiln(address, args, &out) == 4);
    CHECK(absl::StartsWith(out, "kiln: "));
    CHECK(Contains(out, "the orchestrator at " + address + " (--address, KILN_ADDRESS)"));
  }
  // The global flags also after the command, where people type them.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"workflow", "list", "--address", address},
        {"workflow", "show", "--id", "w", "--address", address, "--output", "json"}}) {
    INFO(absl::StrJoin(args, " "));
    absl::StatusOr<int> code =
        testutil::RunCommand(BinaryPath("kiln"), args, &out, absl::Seconds(90));
    REQUIRE(code.ok());
    CHECK(*code == 4);
    CHECK(Contains(out, "the orchestrator at " + address + " (--address, KILN_ADDRESS)"));
  }
  REQUIRE(Kiln(address, {"--platform", address, "project", "list"}, &out) == 4);
  CHECK(Contains(out, "cannot reach the build platform (kiln-worker's BuildService) at " + address +
                          " (--platform-address, KILN_PLATFORM_ADDRESS)"));
  // The commands main() defines itself (the groups' are walked by help_test): an example each.
  for (std::vector<std::string> command : std::vector<std::vector<std::string>>{
           {"health"}, {"info"}, {"completion"}, {"token", "revoke"}}) {
    const std::string path = absl::StrJoin(command, " ");
    INFO(path);
    command.push_back("--help");
    REQUIRE(Kiln(address, command, &out) == 0);
    CHECK(Contains(out, "Examples:\n  kiln " + path));
  }
  REQUIRE(Kiln(address, {"--help"}, &out) == 0);
  CHECK(Contains(out, "Exit codes: 0 ok; 1 the thing failed"));
  CHECK(Contains(out, "4 unreachable"));
  REQUIRE(Kiln(address, {"--output", "yaml", "workflow", "list"}, &out) == 2);
}

TEST_CASE("kiln task-queue describe shows pollers backlog and the oldest task's age") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  const std::string address = orchestrator.address();
  ScopedEnv data_dir("KILN_DATA_DIR", dir.path() + "/data");
  TestWorker worker(orchestrator.connection().channel(), "served");
  worker.Start();
  std::string out;

  // A queue with a worker polling it: the worker is a poller; nothing waits.
  REQUIRE(testutil::WaitFor(
      [&] {
        return Kiln(address, {"task-queue", "describe", "served"}, &out) == 0 &&
               Contains(out, "Pollers (1):");
      },
      absl::Seconds(30)));
  CHECK(Contains(out, "Task queue:        served (workflow)\n"));
  CHECK(Contains(out, "Backlog:           0 tasks\n"));
  CHECK(Contains(out, "  IDENTITY"));

  // A queue nobody polls: the workflow task waits there, with its age.
  auto& stub = orchestrator.connection().workflow_service();
  REQUIRE(testutil::StartWorkflow(stub, "waiting", "timer", "unserved", "1").ok());
  REQUIRE(Kiln(address, {"task-queue", "describe", "unserved"}, &out) == 0);
  CHECK(Contains(out, "Backlog:           1 task, oldest waiting "));
  CHECK(Contains(out, "Pollers (0): none: no worker polls this queue, so its tasks wait\n"));
  REQUIRE(Kiln(address, {"-o", "json", "task-queue", "describe", "unserved"}, &out) == 0);
  auto described = ParseJson<api::v1::DescribeTaskQueueResponse>(out);
  CHECK(described.backlog_count() == 1);
  CHECK(described.pollers_size() == 0);
  REQUIRE(Kiln(address, {"task-queue", "describe", "unserved", "--kind", "activity"}, &out) == 0);
  CHECK(Contains(out, "Task queue:        unserved (activity)\n"));
  CHECK(Contains(out, "Backlog:           0 tasks\n"));
  REQUIRE(Kiln(address, {"task-queue", "describe", "unserved", "--kind", "nexus"}, &out) == 2);
  REQUIRE(Kiln(address, {"task-queue", "describe"}, &out) == 2);
  worker.Stop();
  REQUIRE(orchestrator.Stop().value() == 0);
}

// What bash offers after `kiln <words>` with the script `kiln completion bash` prints.
std::string BashCompletes(const std::string& script, const std::string& words, int cword) {
  std::string out;
  auto code = RunCommand("/bin/bash",
                         {"-c", "source " + script + "; COMP_WORDS=(" + words + "); COMP_CWORD=" +
                                    std::to_string(cword) + "; _kiln; echo \"${COMPREPLY[*]}\""},
                         &out, absl::Seconds(30));
  REQUIRE(code.ok());
  REQUIRE(*code == 0);
  return std::string(absl::StripTrailingAsciiWhitespace(out));
}

TEST_CASE("kiln completion bash completes commands and flags at every level") {
  testutil::TempDir dir;
  std::string script;
  REQUIRE(Kiln("127.0.0.1:1", {"completion", "bash"}, &script) == 0);
  REQUIRE(absl::StartsWith(script, "# bash completion for kiln"));
  const std::string path = dir.path() + "/kiln.bash";
  {
    std::ofstream file(path);
    file << script;
  }
  CHECK(BashCompletes(path, "kiln wor", 1) == "workflow");
  CHECK(BashCompletes(path, "kiln task-queue d", 2) == "describe");
  CHECK(BashCompletes(path, "kiln workflow s", 2) == "start show signal stack");
  CHECK(BashCompletes(path, "kiln workflow st", 2) == "start stack");
  CHECK(BashCompletes(path, "kiln --output json workflow co", 4) == "count");
  // A command's own flags, the alias reaching history's.
  CHECK(BashCompletes(path, "kiln workflow show --id w --f", 5) == "--follow");
  CHECK(BashCompletes(path, "kiln workflow count --gr", 3) == "--group-by");
  CHECK(BashCompletes(path, "kiln --no", 1) == "--no-color");
  std::string zsh;
  REQUIRE(Kiln("127.0.0.1:1", {"completion", "zsh"}, &zsh) == 0);
  CHECK(absl::StartsWith(zsh, "#compdef kiln\n"));
  CHECK(Contains(zsh, "compdef _kiln kiln"));
  REQUIRE(Kiln("127.0.0.1:1", {"completion", "fish"}, &zsh) == 2);
}

}  // namespace
}  // namespace kiln
