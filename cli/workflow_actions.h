// The `kiln workflow ...` commands, one function each, apart from flag parsing: each takes its
// options, a WorkflowService stub (an interface, so tests can fake the server; `logs` takes the
// LogService stub too) and where to write, and returns the process exit code (cli/rpc.h's
// ExitCode; CLI11's usage errors never get here).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/rpc.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"

namespace kiln::cli {

using WorkflowStub = api::v1::WorkflowService::StubInterface;
using LogStub = api::v1::LogService::StubInterface;

// Which run: an empty run id means the workflow's current run.
struct RunRef {
  std::string workflow_id;
  std::string run_id;
};

struct StartOptions {
  std::string workflow_id;
  std::string workflow_type;
  std::string task_queue;
  // Sent only when given: valid JSON as "json/plain", anything else as "text/plain".
  std::string input;
  bool has_input = false;
  // Zero: the engine's default (no run timeout).
  absl::Duration run_timeout = absl::ZeroDuration();
  // Empty: a fresh one per invocation.
  std::string request_id;
  // `--output json`: the StartWorkflowExecutionResponse (runId, started) instead of the run id.
  bool json = false;
};

// Upper bound of --limit, so one invocation cannot page through an unbounded list.
inline constexpr int kMaxListLimit = 100'000;

struct ListOptions {
  std::string workflow_type;
  // A visibility query, e.g. `Project = "web" AND ExecutionStatus = "Running"`.
  std::string query;
  api::v1::WorkflowExecutionStatus status = api::v1::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED;
  int limit = 100;
  bool json = false;
  // `--output json`: the list as one JSON array rather than an object a line.
  bool json_document = false;
};

struct CountOptions {
  // A visibility query; empty counts every execution.
  std::string query;
  // One count per status (the query ANDed with each ExecutionStatus) besides the total.
  bool group_by_status = false;
  bool json = false;
};

struct DescribeOptions {
  RunRef run;
  bool json = false;
};

struct HistoryOptions {
  RunRef run;
  bool follow = false;
  bool json = false;
  // `--output json`: the list as one JSON array rather than an object a line.
  bool json_document = false;
};

struct ResultOptions {
  RunRef run;
  absl::Duration timeout = absl::Seconds(60);
};

struct TerminateOptions {
  RunRef run;
  std::string reason;
  // `--output json`: {"workflowId", "runId", "terminated": true} instead of a sentence.
  bool json = false;
};

// `kiln workflow reset --to`: an event id, or one of these.
inline constexpr char kResetToLastWorkflowTask[] = "last-workflow-task";
inline constexpr char kResetToFirstWorkflowTask[] = "first-workflow-task";

struct ResetOptions {
  RunRef run;
  // An event id, kResetToLastWorkflowTask or kResetToFirstWorkflowTask (checked when parsed).
  std::string to;
  std::string reason;
  // Empty: a fresh one per invocation.
  std::string request_id;
  bool json = false;
};

// The log stream `kiln workflow logs` reads unless --stream names another.
inline constexpr char kDefaultLogStream[] = "build";

struct LogsOptions {
  RunRef run;
  std::string stream = kDefaultLogStream;
  bool follow = false;
  // The byte offset to start from.
  int64_t from_offset = 0;
};

// Prints the new run id.
int StartWorkflow(WorkflowStub& stub, const StartOptions& options, const Io& io);
// Prints a table (or one JSON object a line), following page tokens up to the limit.
int ListWorkflows(WorkflowStub& stub, const ListOptions& options, const Io& io);
// Prints the count (or, grouped, a STATUS COUNT table and the total).
int CountWorkflows(WorkflowStub& stub, const CountOptions& options, const Io& io);
int DescribeWorkflow(WorkflowStub& stub, const DescribeOptions& options, const Io& io);
// One line per event (or one JSON object a line); with `follow`, until the run closes.
int PrintHistory(WorkflowStub& stub, const HistoryOptions& options, const Io& io);
// Waits for the close event. Completed: prints the result data, exit 0. Otherwise the
// failure goes to stderr, exit 1. Follows continue-as-new and retries to the final run.
int WaitForResult(WorkflowStub& stub, const ResultOptions& options, const Io& io);
int TerminateWorkflow(WorkflowStub& stub, const TerminateOptions& options, const Io& io);
// Prints the new run's id (or the response as JSON). A bad --to is a usage error (exit 2).
int ResetWorkflow(WorkflowStub& stub, const ResetOptions& options, const Io& io);
// `--to`'s value into the request's point; kInvalidArgument naming what it accepts.
absl::Status ParseResetPoint(const std::string& value,
                             api::v1::ResetWorkflowExecutionRequest* request);
// Writes the run's log stream to `io.out` byte for byte. With `follow`, keeps writing what is
// appended until the run closes (then the rest, and exit 0), reconnecting from the offset after
// the last byte written when the orchestrator restarts.
int PrintLogs(WorkflowStub& workflows, LogStub& logs, const LogsOptions& options, const Io& io);

}  // namespace kiln::cli
