// `kiln task-queue describe NAME`: who polls a task queue, how much waits in it and for how
// long, and who holds an exclusive queue's lease — the first things to look at when a workflow
// or a build does not move.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/time/time.h"
#include "cli/rpc.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"

namespace kiln::cli {

struct TaskQueueDescribeOptions {
  std::string name;
  // Workflow tasks or activity tasks: two queues of the same name.
  bool activity = false;
  bool json = false;
};

// The description as text: queue, backlog, exclusive holder, then a table of pollers.
std::string FormatTaskQueue(const std::string& name, bool activity,
                            const api::v1::DescribeTaskQueueResponse& response, absl::Time now);

int DescribeTaskQueue(api::v1::WorkflowService::StubInterface& stub,
                      const TaskQueueDescribeOptions& options, const Io& io);

class TaskQueueCommands {
 public:
  // Adds `task-queue` and its subcommands to `app`; the flags parse into this object.
  explicit TaskQueueCommands(CLI::App& app);
  TaskQueueCommands(const TaskQueueCommands&) = delete;
  TaskQueueCommands& operator=(const TaskQueueCommands&) = delete;

  bool parsed() const;
  // `--output json`.
  void SetJsonOutput() { describe_options_.json = true; }
  int Run(api::v1::WorkflowService::StubInterface& stub, const Io& io) const;

 private:
  CLI::App* task_queue_ = nullptr;
  CLI::App* describe_ = nullptr;
  TaskQueueDescribeOptions describe_options_;
};

}  // namespace kiln::cli
