// The list table and the describe report; see execution_format.h.
#include "cli/execution_format.h"

#include <algorithm>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cli/format.h"
#include "common/proto_time.h"

namespace kiln::cli {
namespace {

namespace api = ::kiln::api::v1;

void Field(std::ostream& out, absl::string_view label, absl::string_view value) {
  // Wide enough for the longest label, "History length:".
  static constexpr size_t kLabelWidth = 17;
  WriteField(out, label, value, kLabelWidth);
}

std::string CloseText(const api::WorkflowExecutionInfo& info, absl::Time now) {
  if (!IsSet(info.close_time())) {
    if (!IsSet(info.start_time())) return "-";
    return absl::StrCat("- (open for ", FormatAge(FromProto(info.start_time()), now), ")");
  }
  std::string text = FormatTimestamp(info.close_time());
  if (IsSet(info.start_time())) {
    absl::Duration ran = FromProto(info.close_time()) - FromProto(info.start_time());
    absl::StrAppend(&text, " (ran ", DurationText(absl::Trunc(ran, absl::Milliseconds(1))), ")");
  }
  return text;
}

void WriteWorkflowTask(std::ostream& out, const api::PendingWorkflowTaskInfo& task) {
  std::string text = task.started_event_id() != 0
                         ? absl::StrCat("started (event ", task.started_event_id(), ") at ",
                                        FormatTimestamp(task.started_time()))
                         : absl::StrCat("scheduled (event ", task.scheduled_event_id(), ") at ",
                                        FormatTimestamp(task.scheduled_time()));
  absl::StrAppend(&text, ", attempt ", task.attempt());
  Field(out, "Workflow task", text);
}

void WriteActivities(std::ostream& out, const api::DescribeWorkflowExecutionResponse& d,
                     absl::Time now) {
  out << "\nPending activities (" << d.pending_activities_size() << "):\n";
  Table table(
      {"ACTIVITY ID", "TYPE", "STATE", "ATTEMPT", "LAST FAILURE", "LAST HEARTBEAT", "WORKER"});
  for (const auto& a : d.pending_activities()) {
    std::string attempt = absl::StrCat(a.attempt());
    if (a.maximum_attempts() > 0) absl::StrAppend(&attempt, "/", a.maximum_attempts());
    std::string failure = a.has_last_failure() ? FailureSummary(a.last_failure()) : "";
    std::string heartbeat =
        IsSet(a.last_heartbeat_time())
            ? absl::StrCat(FormatAge(FromProto(a.last_heartbeat_time()), now), " ago")
            : "-";
    table.AddRow(
        {a.activity_id(), a.activity_type().name(),
         StripEnumPrefix(api::PendingActivityState_Name(a.state()), "PENDING_ACTIVITY_STATE_"),
         attempt, failure.empty() ? "-" : QuoteValue(failure), heartbeat,
         a.last_worker_identity().empty() ? "-" : a.last_worker_identity()});
  }
  table.Render(out, "  ");
}

void WriteChildren(std::ostream& out, const api::DescribeWorkflowExecutionResponse& d) {
  out << "\nPending children (" << d.pending_children_size() << "):\n";
  Table table({"WORKFLOW ID", "RUN ID", "TYPE", "STATE", "INITIATED EVENT", "PARENT CLOSE"});
  for (const auto& c : d.pending_children()) {
    table.AddRow({c.workflow_id(), c.run_id().empty() ? "-" : c.run_id(), c.workflow_type_name(),
                  c.started_event_id() != 0 ? "STARTED" : "INITIATED",
                  absl::StrCat(c.initiated_event_id()),
                  StripEnumPrefix(api::ParentClosePolicy_Name(c.parent_close_policy()),
                                  "PARENT_CLOSE_POLICY_")});
  }
  table.Render(out, "  ");
}

void WriteTimers(std::ostream& out, const api::DescribeWorkflowExecutionResponse& d,
                 absl::Time now) {
  out << "\nPending timers (" << d.pending_timers_size() << "):\n";
  Table table({"TIMER ID", "STARTED EVENT", "FIRES AT (UTC)", "FIRES IN"});
  for (const auto& t : d.pending_timers()) {
    std::string fires_in = "-";
    if (IsSet(t.fire_time())) fires_in = FormatAge(now, FromProto(t.fire_time()));
    table.AddRow({t.timer_id(), absl::StrCat(t.started_event_id()), FormatTimestamp(t.fire_time()),
                  fires_in});
  }
  table.Render(out, "  ");
}

}  // namespace

std::string FormatExecutionList(const std::vector<api::WorkflowExecutionInfo>& executions) {
  Table table({"WORKFLOW ID", "RUN ID", "TYPE", "STATUS", "START (UTC)", "CLOSE", "EVENTS"});
  for (const auto& e : executions) {
    table.AddRow({e.execution().workflow_id(), e.execution().run_id(), e.type().name(),
                  StatusName(e.status()), FormatTableTime(e.start_time()),
                  FormatTableTime(e.close_time()), absl::StrCat(e.history_length())});
  }
  std::ostringstream out;
  table.Render(out);
  return out.str();
}

std::string FormatDescription(const api::DescribeWorkflowExecutionResponse& d, absl::Time now) {
  const auto& info = d.workflow_execution_info();
  std::ostringstream out;
  Field(out, "Workflow ID", info.execution().workflow_id());
  Field(out, "Run ID", info.execution().run_id());
  if (!info.first_run_id().empty() && info.first_run_id() != info.execution().run_id())
    Field(out, "First run ID", info.first_run_id());
  Field(out, "Type", info.type().name());
  Field(out, "Task queue", info.task_queue());
  Field(out, "Status", StatusName(info.status()));
  Field(out, "Start", FormatTimestamp(info.start_time()));
  Field(out, "Close", CloseText(info, now));
  Field(out, "History length", absl::StrCat(info.history_length()));
  if (d.has_pending_workflow_task() && d.pending_workflow_task().scheduled_event_id() != 0)
    WriteWorkflowTask(out, d.pending_workflow_task());
  if (d.pending_activities_size() > 0) WriteActivities(out, d, now);
  if (d.pending_timers_size() > 0) WriteTimers(out, d, now);
  if (d.pending_children_size() > 0) WriteChildren(out, d);
  return out.str();
}

}  // namespace kiln::cli
