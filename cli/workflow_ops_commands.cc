// Flag definitions of `kiln workflow signal | query | cancel | stack`; see workflow_ops.h.
#include "cli/flags.h"
#include "cli/help.h"
#include "cli/workflow_ops.h"

namespace kiln::cli {

namespace {

// --id (required) and --run-id (alias --run, as the other workflow commands spell it).
void AddRun(CLI::App& command, RunRef* run) {
  command.add_option("--id", run->workflow_id, "Workflow id")->required();
  command.add_option("--run-id,--run", run->run_id, "Run id (default: the current run)");
}

}  // namespace

WorkflowOpsCommands::WorkflowOpsCommands(CLI::App& workflow) {
  AddSignal(workflow);
  AddQuery(workflow);
  AddCancel(workflow);
  AddStack(workflow);
}

void WorkflowOpsCommands::AddSignal(CLI::App& workflow) {
  signal_ = workflow.add_subcommand(
      "signal",
      "Send a signal to a running workflow; its code receives it on the channel of that name");
  SetExamples(*signal_,
              {"kiln workflow signal --id order-7 --name approve --input '{\"by\":\"ana\"}'",
               "kiln workflow signal --id order-7 --name items --input-file items.json"});
  SignalOptions& o = signal_options_;
  AddRun(*signal_, &o.run);
  signal_->add_option("--name", o.name, "Signal name")->required();
  auto* input = signal_->add_option_function<std::string>(
      "--input",
      [&o](const std::string& value) {
        o.input = value;
        o.has_input = true;
      },
      "Input: JSON (sent as json/plain) or any other text (sent as text/plain)");
  signal_->add_option("--input-file", o.input_file, "Read the input from this file instead")
      ->excludes(input);
}

void WorkflowOpsCommands::AddQuery(CLI::App& workflow) {
  query_ = workflow.add_subcommand(
      "query",
      "Ask a workflow's query handler; prints the answer (the run's history is not changed)");
  SetExamples(*query_, {"kiln workflow query --id deployment-42 --type state",
                        "kiln -o json workflow query --id order-7 --type items --timeout 30s"});
  QueryOptions& o = query_options_;
  AddRun(*query_, &o.run);
  query_->add_option("--type,--name", o.type, "Query type (the handler's name)")->required();
  query_->add_option_function<std::string>(
      "--input",
      [&o](const std::string& value) {
        o.input = value;
        o.has_input = true;
      },
      "Query arguments: JSON (sent as json/plain) or any other text (sent as text/plain)");
  AddDurationOption(*query_, "--timeout", &o.timeout, "How long to wait for a worker's answer");
}

void WorkflowOpsCommands::AddCancel(CLI::App& workflow) {
  cancel_ = workflow.add_subcommand(
      "cancel",
      "Ask a running workflow to cancel: its code hears it and decides how to end (terminate "
      "ends it at once)");
  SetExamples(*cancel_, {"kiln workflow cancel --id deployment-42 --reason superseded"});
  AddRun(*cancel_, &cancel_options_.run);
  cancel_->add_option("--reason", cancel_options_.reason, "Recorded in the history");
}

void WorkflowOpsCommands::AddStack(CLI::App& workflow) {
  stack_ = workflow.add_subcommand(
      "stack",
      "Show where a workflow's code waits now: the activities, timers, signals, children and "
      "conditions its coroutines await, with the source line of each (the built-in "
      "__stack_trace query)");
  SetExamples(*stack_, {"kiln workflow stack --id deployment-42",
                        "kiln -o json workflow stack --id deployment-42 --run-id 0193..."});
  AddRun(*stack_, &stack_options_.run);
  AddDurationOption(*stack_, "--timeout", &stack_options_.timeout,
                    "How long to wait for a worker's answer");
}

bool WorkflowOpsCommands::parsed() const {
  return signal_->parsed() || query_->parsed() || cancel_->parsed() || stack_->parsed();
}

void WorkflowOpsCommands::SetJsonOutput() {
  signal_options_.json = query_options_.json = cancel_options_.json = stack_options_.json = true;
}

int WorkflowOpsCommands::Run(WorkflowStub& stub, const Io& io) const {
  if (signal_->parsed()) return SignalWorkflow(stub, signal_options_, io);
  if (query_->parsed()) return QueryWorkflow(stub, query_options_, io);
  if (cancel_->parsed()) return CancelWorkflow(stub, cancel_options_, io);
  if (stack_->parsed()) return PrintStack(stub, stack_options_, io);
  return kExitUsage;  // parsed() was false
}

}  // namespace kiln::cli
