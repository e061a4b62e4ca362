// The `kiln workflow` command group on the CLI11 app: its subcommands and their flags, and
// running whichever one the command line chose (the work itself is in workflow_actions.h).
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/rpc.h"
#include "cli/workflow_actions.h"
#include "cli/workflow_ops.h"

namespace kiln::cli {

class WorkflowCommands {
 public:
  // Adds `workflow` and its subcommands to `app`; the flags parse into this object, so it must
  // outlive the parse.
  explicit WorkflowCommands(CLI::App& app);
  WorkflowCommands(const WorkflowCommands&) = delete;
  WorkflowCommands& operator=(const WorkflowCommands&) = delete;

  // True when the parsed command line chose `workflow ...`.
  bool parsed() const;
  // `--output json`: every command that prints a result prints JSON, lists as one array.
  void SetJsonOutput();
  // Runs the chosen subcommand; returns the exit code.
  int Run(WorkflowStub& stub, LogStub& logs, const Io& io) const;

 private:
  void AddStart();
  void AddList();
  void AddCount();
  void AddDescribe();
  void AddHistory();
  void AddResult();
  void AddTerminate();
  void AddReset();
  void AddLogs();
  // --id (required) and --run, shared by the commands that address one run.
  static void AddRunFlags(CLI::App& command, RunRef* run);

  CLI::App* workflow_ = nullptr;
  // signal, query, cancel, stack.
  std::unique_ptr<WorkflowOpsCommands> ops_;
  CLI::App* start_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* count_ = nullptr;
  CLI::App* describe_ = nullptr;
  CLI::App* history_ = nullptr;
  CLI::App* result_ = nullptr;
  CLI::App* terminate_ = nullptr;
  CLI::App* reset_ = nullptr;
  CLI::App* logs_ = nullptr;
  StartOptions start_options_;
  ListOptions list_options_;
  CountOptions count_options_;
  DescribeOptions describe_options_;
  HistoryOptions history_options_;
  ResultOptions result_options_;
  TerminateOptions terminate_options_;
  ResetOptions reset_options_;
  LogsOptions logs_options_;
};

}  // namespace kiln::cli
