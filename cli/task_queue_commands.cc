// `kiln task-queue ...`; see task_queue_commands.h.
#include "cli/task_queue_commands.h"

#include <sstream>

#include "absl/strings/str_cat.h"
#include "cli/format.h"
#include "cli/help.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

namespace {

absl::Time ToAbsl(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// An age as FormatAge rounds one: whole seconds from a second up, else milliseconds.
std::string AgeText(const google::protobuf::Duration& d) {
  const absl::Duration age = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  return FormatAge(absl::UnixEpoch(), absl::UnixEpoch() + age);
}

}  // namespace

std::string FormatTaskQueue(const std::string& name, bool activity,
                            const api::DescribeTaskQueueResponse& response, absl::Time now) {
  std::ostringstream out;
  out << "Task queue:        " << name << " (" << (activity ? "activity" : "workflow") << ")\n";
  out << "Backlog:           " << (response.backlog_count_capped() ? "at least " : "")
      << response.backlog_count() << (response.backlog_count() == 1 ? " task" : " tasks");
  if (response.backlog_count() > 0) {
    out << ", oldest waiting " << AgeText(response.oldest_task_age());
  }
  out << "\n";
  if (!response.exclusive_holder().empty()) {
    out << "Exclusive holder:  " << response.exclusive_holder() << " (lease until "
        << FormatTableTime(response.exclusive_lease_expiry()) << " UTC)\n";
  }
  out << "Pollers (" << response.pollers_size() << "):";
  if (response.pollers_size() == 0) {
    out << " none: no worker polls this queue, so its tasks wait\n";
    return out.str();
  }
  out << "\n";
  // WAITING: the worker's polls (or its stream's credits) waiting for a task; 0 from a worker
  // seen just now means every slot of it is busy. VIA: how its tasks come, pushed on a worker
  // stream or long-polled.
  Table table({"IDENTITY", "LAST ACCESS (UTC)", "AGO", "WAITING", "VIA"});
  for (const api::PollerInfo& poller : response.pollers()) {
    table.AddRow({poller.identity(), FormatTableTime(poller.last_access_time()),
                  FormatAge(ToAbsl(poller.last_access_time()), now),
                  absl::StrCat(poller.waiting_polls()), poller.stream() ? "stream" : "polls"});
  }
  table.Render(out, "  ");
  return out.str();
}

int DescribeTaskQueue(api::WorkflowService::StubInterface& stub,
                      const TaskQueueDescribeOptions& options, const Io& io) {
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name(options.name);
  request.set_activity(options.activity);
  api::DescribeTaskQueueResponse response;
  grpc::Status status = stub.DescribeTaskQueue(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, response, /*pretty=*/true);
  io.out << FormatTaskQueue(options.name, options.activity, response, absl::Now());
  return kExitOk;
}

TaskQueueCommands::TaskQueueCommands(CLI::App& app) {
  task_queue_ = app.add_subcommand("task-queue", "Inspect task queues");
  task_queue_->require_subcommand(1);
  describe_ = task_queue_->add_subcommand(
      "describe",
      "Show a queue's pollers (identity, last access, polls or stream credits waiting for a "
      "task), backlog and its oldest task's age, and "
      "an exclusive queue's holder");
  describe_->add_option("name", describe_options_.name, "Task queue name")->required();
  describe_
      ->add_option_function<std::string>(
          "--kind",
          [this](const std::string& kind) { describe_options_.activity = kind == "activity"; },
          "Which of the queue's two halves: workflow (default) or activity tasks")
      ->check(CLI::IsMember({"workflow", "activity"}));
  describe_->add_flag("--json", describe_options_.json, "The DescribeTaskQueueResponse as JSON");
  SetExamples(*describe_, {"kiln task-queue describe builds --kind activity",
                           "kiln task-queue describe project/web --kind activity"});
}

bool TaskQueueCommands::parsed() const { return task_queue_->parsed(); }

int TaskQueueCommands::Run(api::WorkflowService::StubInterface& stub, const Io& io) const {
  if (describe_->parsed()) return DescribeTaskQueue(stub, describe_options_, io);
  return kExitUsage;  // require_subcommand(1) makes this unreachable
}

}  // namespace kiln::cli
