// Flag definitions of `kiln workflow ...`; see workflow_commands.h.
#include "cli/workflow_commands.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/flags.h"
#include "cli/help.h"

namespace kiln::cli {

WorkflowCommands::WorkflowCommands(CLI::App& app) {
  workflow_ = app.add_subcommand(
      "workflow", "Start, inspect, signal, query, cancel, terminate and reset workflows");
  workflow_->require_subcommand(1);
  AddStart();
  AddList();
  AddCount();
  AddDescribe();
  AddHistory();
  AddResult();
  AddTerminate();
  AddReset();
  AddLogs();
  ops_ = std::make_unique<WorkflowOpsCommands>(*workflow_);
}

void WorkflowCommands::AddRunFlags(CLI::App& command, RunRef* run) {
  command.add_option("--id", run->workflow_id, "Workflow id")->required();
  command.add_option("--run,--run-id", run->run_id, "Run id (default: the current run)");
}

void WorkflowCommands::AddStart() {
  start_ = workflow_->add_subcommand("start", "Start a workflow; prints its run id");
  StartOptions& o = start_options_;
  start_->add_option("--id", o.workflow_id, "Workflow id")->required();
  start_->add_option("--type", o.workflow_type, "Workflow type")->required();
  start_->add_option("--task-queue", o.task_queue, "Task queue its workers poll")->required();
  start_->add_option_function<std::string>(
      "--input",
      [&o](const std::string& value) {
        o.input = value;
        o.has_input = true;
      },
      "Input: JSON (sent as json/plain) or any other text (sent as text/plain)");
  AddDurationOption(*start_, "--run-timeout", &o.run_timeout,
                    "Limit on the run's duration (e.g. 60s, 5m)")
      ->default_str("none");
  start_->add_option("--request-id", o.request_id,
                     "Idempotency key: a repeated start with it returns the same run");
  SetExamples(*start_, {"kiln workflow start --id hello-1 --type Hello --task-queue samples "
                        "--input '\"world\"'",
                        "kiln workflow start --id nightly --type report --task-queue reports "
                        "--run-timeout 10m --request-id nightly-2026-12-06"});
}

void WorkflowCommands::AddList() {
  list_ = workflow_->add_subcommand("list", "List workflow executions, newest first");
  ListOptions& o = list_options_;
  list_->add_option("--type", o.workflow_type, "Only this workflow type");
  list_->add_option("--query", o.query,
                    "Visibility query, e.g. 'Project = \"web\" AND ExecutionStatus = \"Running\"'");
  list_
      ->add_option_function<std::string>(
          "--status", [&o](const std::string& value) { o.status = ParseStatusFlag(value).value(); },
          absl::StrCat("Only this status: ", absl::StrJoin(StatusFlagValues(), "|")))
      ->check(StatusValidator());
  list_->add_option("--limit", o.limit, "Most executions to show")
      ->check(CLI::Range(1, kMaxListLimit))
      ->capture_default_str();
  list_->add_flag("--json", o.json, "One JSON object (WorkflowExecutionInfo) a line");
  SetExamples(*list_, {"kiln workflow list --status running",
                       "kiln workflow list --query 'Project = \"web\" AND ExecutionStatus = "
                       "\"Failed\"' --limit 20"});
}

void WorkflowCommands::AddCount() {
  count_ =
      workflow_->add_subcommand("count", "Count workflow executions matching a visibility query");
  count_->add_option("--query", count_options_.query,
                     "Visibility query (the same language as list --query); default: all");
  count_
      ->add_option_function<std::string>(
          "--group-by", [this](const std::string&) { count_options_.group_by_status = true; },
          "Also count per value of this field: status")
      ->check(CLI::IsMember({"status"}));
  count_->add_flag("--json", count_options_.json, "The counts as JSON");
  SetExamples(*count_,
              {"kiln workflow count --query 'WorkflowType = \"build\"' --group-by status"});
}

void WorkflowCommands::AddDescribe() {
  describe_ = workflow_->add_subcommand(
      "describe", "Show a run's status, times and pending activities, timers and tasks");
  AddRunFlags(*describe_, &describe_options_.run);
  describe_->add_flag("--json", describe_options_.json,
                      "The DescribeWorkflowExecutionResponse as JSON");
  SetExamples(*describe_, {"kiln workflow describe --id build-42",
                           "kiln -o json workflow describe --id build-42 --run 0193..."});
}

void WorkflowCommands::AddHistory() {
  history_ =
      workflow_->add_subcommand("history", "Print a run's history, one event a line (alias: show)");
  history_->alias("show");
  AddRunFlags(*history_, &history_options_.run);
  history_->add_flag("--follow,-f", history_options_.follow,
                     "Keep printing new events until the run closes");
  history_->add_flag("--json", history_options_.json, "One JSON object (HistoryEvent) a line");
  SetExamples(*history_, {"kiln workflow history --id build-42 > history.txt",
                          "kiln workflow show --id build-42 --follow",
                          "kiln -o json workflow history --id build-42 > history.json"});
}

void WorkflowCommands::AddResult() {
  result_ = workflow_->add_subcommand(
      "result", "Wait for a run to close; print its result (exit 0) or its failure (exit 1)");
  AddRunFlags(*result_, &result_options_.run);
  AddDurationOption(*result_, "--timeout", &result_options_.timeout,
                    "How long to wait for the close");
  SetExamples(*result_, {"kiln workflow result --id hello-1 --timeout 60s"});
}

void WorkflowCommands::AddTerminate() {
  terminate_ = workflow_->add_subcommand("terminate", "Terminate a running workflow");
  AddRunFlags(*terminate_, &terminate_options_.run);
  terminate_->add_option("--reason", terminate_options_.reason, "Recorded in the history");
  SetExamples(*terminate_,
              {"kiln workflow terminate --id build-42 --reason 'stuck on a bad commit'"});
}

void WorkflowCommands::AddReset() {
  reset_ = workflow_->add_subcommand(
      "reset",
      "Start a new run from one of the run's workflow tasks: its history up to there, then the "
      "signals received after it; the old run, if open, is terminated. Prints the new run id");
  ResetOptions& o = reset_options_;
  reset_->add_option("--id", o.run.workflow_id, "Workflow id")->required();
  reset_->add_option("--run-id,--run", o.run.run_id, "Run id (default: the current run)");
  CLI::Validator point(
      [](std::string& value) -> std::string {
        api::v1::ResetWorkflowExecutionRequest request;
        absl::Status parsed = ParseResetPoint(value, &request);
        return parsed.ok() ? "" : std::string(parsed.message());
      },
      "EVENT-ID|last-workflow-task|first-workflow-task", "reset point");
  reset_
      ->add_option("--to", o.to,
                   "Where to: a WorkflowTaskCompleted/Started/Scheduled event id, "
                   "last-workflow-task or first-workflow-task (the last or first completed one)")
      ->required()
      ->check(point);
  reset_->add_option("--reason", o.reason, "Recorded in both runs' histories");
  reset_->add_option("--request-id", o.request_id,
                     "Idempotency key: a repeated reset with it returns the same new run");
  SetExamples(*reset_, {"kiln workflow reset --id build-42 --to last-workflow-task --reason 'bad "
                        "deploy'",
                        "kiln workflow reset --id order-7 --run-id 0193... --to 12"});
}

void WorkflowCommands::AddLogs() {
  logs_ = workflow_->add_subcommand("logs", "Print a run's log stream (a build's output)");
  LogsOptions& o = logs_options_;
  AddRunFlags(*logs_, &o.run);
  logs_->add_option("--stream", o.stream, "Log stream name")->capture_default_str();
  logs_->add_flag("--follow,-f", o.follow, "Keep printing what is appended until the run closes");
  CLI::Validator offset(
      [](std::string& value) -> std::string {
        int64_t parsed = 0;
        if (absl::SimpleAtoi(value, &parsed) && parsed >= 0) return "";
        return absl::StrCat("'", value, "' is not a byte offset (0 or more)");
      },
      "OFFSET", "byte offset");
  logs_->add_option("--from", o.from_offset, "Byte offset to start from")
      ->check(offset)
      ->capture_default_str();
  SetExamples(*logs_, {"kiln workflow logs --id web-1a2b3c4-x7y8z9 --follow"});
}

bool WorkflowCommands::parsed() const { return workflow_->parsed(); }

void WorkflowCommands::SetJsonOutput() {
  list_options_.json = list_options_.json_document = true;
  count_options_.json = true;
  describe_options_.json = true;
  history_options_.json = history_options_.json_document = true;
  start_options_.json = true;
  terminate_options_.json = true;
  ops_->SetJsonOutput();
  reset_options_.json = true;
}

int WorkflowCommands::Run(WorkflowStub& stub, LogStub& logs, const Io& io) const {
  if (start_->parsed()) return StartWorkflow(stub, start_options_, io);
  if (list_->parsed()) return ListWorkflows(stub, list_options_, io);
  if (count_->parsed()) return CountWorkflows(stub, count_options_, io);
  if (describe_->parsed()) return DescribeWorkflow(stub, describe_options_, io);
  if (history_->parsed()) return PrintHistory(stub, history_options_, io);
  if (result_->parsed()) return WaitForResult(stub, result_options_, io);
  if (terminate_->parsed()) return TerminateWorkflow(stub, terminate_options_, io);
  if (reset_->parsed()) return ResetWorkflow(stub, reset_options_, io);
  if (logs_->parsed()) return PrintLogs(stub, logs, logs_options_, io);
  if (ops_->parsed()) return ops_->Run(stub, io);
  return 2;  // require_subcommand(1) makes this unreachable
}

}  // namespace kiln::cli
