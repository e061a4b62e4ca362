// `kiln workflow signal | query | cancel | stack`: the commands that talk to a running
// workflow's code (SignalWorkflowExecution, QueryWorkflow, RequestCancelWorkflowExecution), one
// function each, apart from flag parsing (WorkflowOpsCommands below, added to `kiln workflow` by
// WorkflowCommands). Each returns the process exit code (cli/rpc.h's ExitCode).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/time/time.h"
#include "cli/rpc.h"
#include "cli/workflow_actions.h"
#include "kiln/api/v1/stack_trace.pb.h"

namespace kiln::cli {

// The longest a query waits for a worker's answer, unless --timeout says otherwise.
inline constexpr absl::Duration kDefaultQueryTimeout = absl::Seconds(10);

struct SignalOptions {
  RunRef run;
  std::string name;
  // --input as typed, or (input_file set) the file's content; sent as cli/payloads.h says.
  std::string input;
  bool has_input = false;
  std::string input_file;
  bool json = false;
};

struct QueryOptions {
  RunRef run;
  std::string type;
  std::string input;
  bool has_input = false;
  absl::Duration timeout = kDefaultQueryTimeout;
  bool json = false;
};

struct CancelOptions {
  RunRef run;
  std::string reason;
  bool json = false;
};

struct StackOptions {
  RunRef run;
  absl::Duration timeout = kDefaultQueryTimeout;
  bool json = false;
};

// Prints what was sent ("signaled ..."; JSON: the workflow, run and signal name).
int SignalWorkflow(WorkflowStub& stub, const SignalOptions& options, const Io& io);
// Prints the answer: each payload's data on its own line (JSON: the answer as one JSON value).
int QueryWorkflow(WorkflowStub& stub, const QueryOptions& options, const Io& io);
// Asks the run to cancel; its code decides how it ends. Prints what was asked.
int CancelWorkflow(WorkflowStub& stub, const CancelOptions& options, const Io& io);
// Asks the built-in "__stack_trace" query; prints where the code waits (JSON: the answer as the
// SDK sent it).
int PrintStack(WorkflowStub& stub, const StackOptions& options, const Io& io);

// The stack trace as text: a header line, the awaits a coroutine is suspended on, then the
// operations started and not awaited. Pure, for tests.
std::string FormatStackTrace(const api::v1::WorkflowStackTrace& trace);

// The flags of signal, query, cancel and stack on the `workflow` command.
class WorkflowOpsCommands {
 public:
  explicit WorkflowOpsCommands(CLI::App& workflow);
  WorkflowOpsCommands(const WorkflowOpsCommands&) = delete;
  WorkflowOpsCommands& operator=(const WorkflowOpsCommands&) = delete;

  // True when the command line chose one of these.
  bool parsed() const;
  void SetJsonOutput();
  int Run(WorkflowStub& stub, const Io& io) const;

 private:
  void AddSignal(CLI::App& workflow);
  void AddQuery(CLI::App& workflow);
  void AddCancel(CLI::App& workflow);
  void AddStack(CLI::App& workflow);

  CLI::App* signal_ = nullptr;
  CLI::App* query_ = nullptr;
  CLI::App* cancel_ = nullptr;
  CLI::App* stack_ = nullptr;
  SignalOptions signal_options_;
  QueryOptions query_options_;
  CancelOptions cancel_options_;
  StackOptions stack_options_;
};

}  // namespace kiln::cli
