// Unit tests of the CLI's text output: times, durations, quoting, tables, history event lines
// and the list/describe reports. No server involved.
#include <catch2/catch.hpp>

#include <sstream>

#include "cli/event_format.h"
#include "cli/execution_format.h"
#include "cli/format.h"
#include "cli/task_queue_commands.h"
#include "common/proto_time.h"

namespace kiln::cli {
namespace {

namespace api = ::kiln::api::v1;

const absl::Time kT0 = absl::FromUnixMillis(1795788000123);  // 2026-11-27T14:00:00.123Z

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp out;
  ToProto(t, &out);
  return out;
}

api::Payloads Text(const std::string& data, const std::string& encoding = "text/plain") {
  api::Payloads payloads;
  auto* p = payloads.add_payloads();
  (*p->mutable_metadata())["encoding"] = encoding;
  p->set_data(data);
  return payloads;
}

api::HistoryEvent Event(int64_t id, api::EventType type) {
  api::HistoryEvent e;
  e.set_event_id(id);
  e.set_event_type(type);
  *e.mutable_event_time() = Ts(kT0);
  return e;
}

TEST_CASE("Times print in UTC with milliseconds, unset ones as a dash") {
  REQUIRE(FormatTimestamp(Ts(kT0)) == "2026-11-27T14:00:00.123Z");
  REQUIRE(FormatTableTime(Ts(kT0)) == "2026-11-27 14:00:00");
  REQUIRE(FormatTimestamp(google::protobuf::Timestamp()) == "-");
  REQUIRE(FormatTableTime(google::protobuf::Timestamp()) == "-");
}

TEST_CASE("Durations print in short form and ages round to seconds from a second up") {
  REQUIRE(DurationText(absl::Milliseconds(500)) == "500ms");
  REQUIRE(DurationText(absl::Seconds(10)) == "10s");
  REQUIRE(DurationText(absl::Seconds(90)) == "1m30s");
  REQUIRE(DurationText(absl::Hours(1)) == "1h");
  google::protobuf::Duration d;
  d.set_seconds(3600);
  REQUIRE(DurationText(d) == "1h");
  REQUIRE(FormatAge(kT0, kT0 + absl::Milliseconds(250)) == "250ms");
  REQUIRE(FormatAge(kT0, kT0 + absl::Milliseconds(3750)) == "3s");
  REQUIRE(FormatAge(kT0, kT0) == "0s");
  REQUIRE(FormatAge(kT0, kT0 - absl::Seconds(1)) == "0s");  // clock skew: never negative
}

TEST_CASE("Enum names become CamelCase event names and bare status names") {
  REQUIRE(EventTypeName(api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == "ActivityTaskScheduled");
  REQUIRE(EventTypeName(api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW) ==
          "WorkflowExecutionContinuedAsNew");
  REQUIRE(EventTypeName(static_cast<api::EventType>(99)) == "EventType(99)");
  REQUIRE(StatusName(api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT) == "TIMED_OUT");
  REQUIRE(StatusName(static_cast<api::WorkflowExecutionStatus>(42)) == "UNKNOWN(42)");
}

TEST_CASE("Values are quoted only when they need it, and cut at 80 characters") {
  REQUIRE(QuoteValue("plain") == "plain");
  REQUIRE(QuoteValue("") == "\"\"");
  REQUIRE(QuoteValue("two words") == "\"two words\"");
  REQUIRE(QuoteValue("a=b") == "a=b");
  REQUIRE(QuoteValue("{\"n\":1}") == "{\"n\":1}");  // compact JSON reads as is
  REQUIRE(QuoteValue("\"s\"") == "\"\\\"s\\\"\"");
  REQUIRE(QuoteValue("say \"hi\"\n") == "\"say \\\"hi\\\"\\n\"");
  REQUIRE(QuoteValue("héllo") == "héllo");  // UTF-8 stays readable

  std::string long_text(200, 'x');
  REQUIRE(Truncate(long_text, 80) == std::string(77, 'x') + "...");
  REQUIRE(Truncate("short", 80) == "short");
  // A cut never splits a UTF-8 sequence: "é" is two bytes.
  std::string accents = std::string(76, 'a') + "éé";
  REQUIRE(Truncate(accents + "tail", 80) == std::string(76, 'a') + "...");
}

TEST_CASE("Payloads show their data and binary ones their size and encoding") {
  REQUIRE(PayloadsSummary(api::Payloads()) == "");
  REQUIRE(PayloadsSummary(Text("{\"n\":1}", "json/plain")) == "{\"n\":1}");
  REQUIRE(PayloadsSummary(Text("\x01\x02\x03", "binary/protobuf")) == "<3 bytes binary/protobuf>");
  REQUIRE(PayloadsSummary(Text("", "binary/null")) == "null");
  api::Payloads two = Text("a");
  *two.add_payloads() = Text("b").payloads(0);
  REQUIRE(PayloadsSummary(two) == "[a, b]");
  REQUIRE(PayloadsSummary(Text(std::string(500, 'y'))).size() == kMaxValueChars);

  api::Failure failure;
  failure.set_message("boom");
  REQUIRE(FailureSummary(failure) == "boom");
  failure.mutable_application_failure_info()->set_type("Flaky");
  REQUIRE(FailureSummary(failure) == "boom (type=Flaky)");
}

TEST_CASE("Tables pad columns to the widest cell and leave no trailing spaces") {
  Table table({"ID", "TYPE", "NOTE"});
  table.AddRow({"a", "steps", "x"});
  table.AddRow({"long-id", "t", ""});
  table.AddRow({"short"});  // padded with empty cells
  std::ostringstream out;
  table.Render(out, "  ");
  REQUIRE(out.str() ==
          "  ID       TYPE   NOTE\n"
          "  a        steps  x\n"
          "  long-id  t\n"
          "  short\n");
  REQUIRE(table.rows() == 3);
}

// The table of `header` and `rows`, rendered without indent.
std::string Rendered(std::vector<std::string> header, std::vector<std::vector<std::string>> rows) {
  Table table(std::move(header));
  for (auto& row : rows) table.AddRow(std::move(row));
  std::ostringstream out;
  table.Render(out);
  return out.str();
}

TEST_CASE("Tables pad by characters, not bytes") {
  // "é": two bytes, one column.
  REQUIRE(Rendered({"ID", "STATUS"}, {{"héllo", "RUNNING"}, {"hello", "FAILED"}}) ==
          "ID     STATUS\n"
          "héllo  RUNNING\n"
          "hello  FAILED\n");
  // Wide characters take two columns, combining marks none; a stray byte one.
  REQUIRE(Rendered({"ID", "STATUS"},
                   {{"构建", "RUNNING"}, {"e\xcc\x81t\xc3", "FAILED"}, {"abcde", "FAILED"}}) ==
          "ID     STATUS\n"
          "构建   RUNNING\n"
          "e\xcc\x81t\xc3    FAILED\n"
          "abcde  FAILED\n");
}

TEST_CASE("A cell or a field holding newlines cannot forge a row or a field of its own") {
  // A workflow id is any string its starter chose; the terminal filter lets newlines through.
  REQUIRE(Rendered({"WORKFLOW ID", "STATUS"},
                   {{"x\nforged  COMPLETED", "RUNNING"}, {"tab\there\r\x1b[2J", "FAILED"}}) ==
          "WORKFLOW ID             STATUS\n"
          "x\\x0aforged  COMPLETED  RUNNING\n"
          "tab\\x09here\\x0d\\x1b[2J  FAILED\n");
  REQUIRE(OneLine("plain, é") == "plain, é");

  std::ostringstream field;
  WriteField(field, "Error", "build failed\nStatus: SUCCEEDED\n", 8);
  WriteField(field, "ID", "w", 8);
  REQUIRE(field.str() ==
          "Error:  build failed\n"
          "        Status: SUCCEEDED\n"
          "ID:     w\n");
}

TEST_CASE("History events print as one line with their key attributes") {
  api::HistoryEvent scheduled = Event(5, api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
  auto* a = scheduled.mutable_activity_task_scheduled_event_attributes();
  a->set_activity_id("a");
  a->mutable_activity_type()->set_name("greet");
  REQUIRE(FormatEventLine(scheduled) ==
          "  5  2026-11-27T14:00:00.123Z  ActivityTaskScheduled  activity_id=a type=greet");

  api::HistoryEvent started = Event(1, api::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
  auto* s = started.mutable_workflow_execution_started_event_attributes();
  s->mutable_workflow_type()->set_name("steps");
  s->mutable_task_queue()->set_name("q");
  *s->mutable_input() = Text("2");
  s->mutable_workflow_run_timeout()->set_seconds(60);
  REQUIRE(EventAttributesSummary(started) == "type=steps task_queue=q input=2 run_timeout=1m");

  api::HistoryEvent completed = Event(23, api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  *completed.mutable_workflow_execution_completed_event_attributes()->mutable_result() =
      Text(std::string(100, 'r'));
  REQUIRE(EventAttributesSummary(completed) == "result=" + std::string(77, 'r') + "...");

  api::HistoryEvent terminated = Event(7, api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
  auto* t = terminated.mutable_workflow_execution_terminated_event_attributes();
  t->set_reason("no longer needed");
  t->set_identity("kiln-cli@host");
  REQUIRE(EventAttributesSummary(terminated) ==
          "reason=\"no longer needed\" identity=kiln-cli@host");

  api::HistoryEvent failed = Event(9, api::EVENT_TYPE_ACTIVITY_TASK_FAILED);
  auto* f = failed.mutable_activity_task_failed_event_attributes();
  f->set_scheduled_event_id(5);
  f->mutable_failure()->set_message("disk full");
  f->set_retry_state(api::RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED);
  REQUIRE(EventAttributesSummary(failed) ==
          "scheduled=5 failure=\"disk full\" retry_state=MAXIMUM_ATTEMPTS_REACHED");

  api::HistoryEvent timer = Event(1234, api::EVENT_TYPE_TIMER_STARTED);
  timer.mutable_timer_started_event_attributes()->set_timer_id("sleep");
  timer.mutable_timer_started_event_attributes()->mutable_start_to_fire_timeout()->set_seconds(
      3600);
  REQUIRE(FormatEventLine(timer) ==
          "1234  2026-11-27T14:00:00.123Z  TimerStarted  timer_id=sleep timeout=1h");

  // An event without attributes has no trailing separator.
  REQUIRE(FormatEventLine(Event(2, api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)) ==
          "  2  2026-11-27T14:00:00.123Z  WorkflowTaskScheduled");
}

api::WorkflowExecutionInfo Info(const std::string& id, api::WorkflowExecutionStatus status) {
  api::WorkflowExecutionInfo info;
  info.mutable_execution()->set_workflow_id(id);
  info.mutable_execution()->set_run_id("run-" + id);
  info.mutable_type()->set_name("steps");
  info.set_task_queue("q");
  info.set_status(status);
  *info.mutable_start_time() = Ts(kT0);
  info.set_history_length(3);
  return info;
}

TEST_CASE("The list is a table with a row per execution") {
  auto done = Info("w1", api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  *done.mutable_close_time() = Ts(kT0 + absl::Seconds(2));
  done.set_history_length(11);
  REQUIRE(FormatExecutionList({done, Info("w2", api::WORKFLOW_EXECUTION_STATUS_RUNNING)}) ==
          "WORKFLOW ID  RUN ID  TYPE   STATUS     START (UTC)          CLOSE                "
          "EVENTS\n"
          "w1           run-w1  steps  COMPLETED  2026-11-27 14:00:00  2026-11-27 14:00:02  11\n"
          "w2           run-w2  steps  RUNNING    2026-11-27 14:00:00  -                    3\n");
  REQUIRE(FormatExecutionList({}) ==
          "WORKFLOW ID  RUN ID  TYPE  STATUS  START (UTC)  CLOSE  EVENTS\n");
}

TEST_CASE("Describe shows the run and its pending work") {
  api::DescribeWorkflowExecutionResponse d;
  *d.mutable_workflow_execution_info() = Info("w", api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  auto* task = d.mutable_pending_workflow_task();
  task->set_scheduled_event_id(8);
  *task->mutable_scheduled_time() = Ts(kT0);
  task->set_attempt(1);
  auto* activity = d.add_pending_activities();
  activity->set_activity_id("step-1");
  activity->mutable_activity_type()->set_name("echo");
  activity->set_state(api::PENDING_ACTIVITY_STATE_STARTED);
  activity->set_attempt(2);
  activity->mutable_last_failure()->set_message("first attempt always fails");
  *activity->mutable_last_heartbeat_time() = Ts(kT0 + absl::Seconds(1));
  activity->set_last_worker_identity("worker@host");
  auto* child = d.add_pending_children();
  child->set_workflow_id("w-child");
  child->set_run_id("run-c");
  child->set_workflow_type_name("build");
  child->set_initiated_event_id(6);
  child->set_started_event_id(7);
  child->set_parent_close_policy(api::PARENT_CLOSE_POLICY_TERMINATE);
  auto* unstarted = d.add_pending_children();
  unstarted->set_workflow_id("w-child-2");
  unstarted->set_workflow_type_name("build");
  unstarted->set_initiated_event_id(9);
  auto* timer = d.add_pending_timers();
  timer->set_timer_id("sleep");
  timer->set_started_event_id(5);
  *timer->mutable_fire_time() = Ts(kT0 + absl::Hours(1));

  std::string text = FormatDescription(d, kT0 + absl::Seconds(4));
  REQUIRE(text ==
          "Workflow ID:     w\n"
          "Run ID:          run-w\n"
          "Type:            steps\n"
          "Task queue:      q\n"
          "Status:          RUNNING\n"
          "Start:           2026-11-27T14:00:00.123Z\n"
          "Close:           - (open for 4s)\n"
          "History length:  3\n"
          "Workflow task:   scheduled (event 8) at 2026-11-27T14:00:00.123Z, attempt 1\n"
          "\n"
          "Pending activities (1):\n"
          "  ACTIVITY ID  TYPE  STATE    ATTEMPT  LAST FAILURE                  LAST HEARTBEAT  "
          "WORKER\n"
          "  step-1       echo  STARTED  2        \"first attempt always fails\"  3s ago          "
          "worker@host\n"
          "\n"
          "Pending timers (1):\n"
          "  TIMER ID  STARTED EVENT  FIRES AT (UTC)            FIRES IN\n"
          "  sleep     5              2026-11-27T15:00:00.123Z  59m56s\n"
          "\n"
          "Pending children (2):\n"
          "  WORKFLOW ID  RUN ID  TYPE   STATE      INITIATED EVENT  PARENT CLOSE\n"
          "  w-child      run-c   build  STARTED    6                TERMINATE\n"
          "  w-child-2    -       build  INITIATED  9                UNSPECIFIED\n");

  d.clear_pending_activities();
  d.clear_pending_timers();
  d.clear_pending_children();
  d.clear_pending_workflow_task();
  auto* info = d.mutable_workflow_execution_info();
  info->set_status(api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  *info->mutable_close_time() = Ts(kT0 + absl::Milliseconds(1500));
  text = FormatDescription(d, kT0 + absl::Seconds(4));
  REQUIRE(text.find("Status:          TERMINATED\n") != std::string::npos);
  REQUIRE(text.find("Close:           2026-11-27T14:00:01.623Z (ran 1.5s)\n") != std::string::npos);
  REQUIRE(text.find("Pending") == std::string::npos);
}

TEST_CASE("A task queue description names its backlog pollers and holder") {
  api::DescribeTaskQueueResponse response;
  response.set_backlog_count(3);
  response.mutable_oldest_task_age()->set_seconds(5);
  response.mutable_oldest_task_age()->set_nanos(753'135'090);
  response.set_exclusive_holder("agent-1");
  *response.mutable_exclusive_lease_expiry() = Ts(kT0 + absl::Seconds(30));
  auto* poller = response.add_pollers();
  poller->set_identity("worker@host");
  *poller->mutable_last_access_time() = Ts(kT0 - absl::Seconds(2));
  poller->set_waiting_polls(16);
  poller->set_stream(true);
  auto* agent = response.add_pollers();
  agent->set_identity("agent-1");
  *agent->mutable_last_access_time() = Ts(kT0);
  agent->set_waiting_polls(1);
  CHECK(FormatTaskQueue("builds", /*activity=*/true, response, kT0) ==
        "Task queue:        builds (activity)\n"
        "Backlog:           3 tasks, oldest waiting 5s\n"
        "Exclusive holder:  agent-1 (lease until 2026-11-27 14:00:30 UTC)\n"
        "Pollers (2):\n"
        "  IDENTITY     LAST ACCESS (UTC)    AGO  WAITING  VIA\n"
        "  worker@host  2026-11-27 13:59:58  2s   16       stream\n"
        "  agent-1      2026-11-27 14:00:00  0s   1        polls\n");
  response.set_backlog_count_capped(true);
  response.clear_pollers();
  CHECK(FormatTaskQueue("q", /*activity=*/false, response, kT0) ==
        "Task queue:        q (workflow)\n"
        "Backlog:           at least 3 tasks, oldest waiting 5s\n"
        "Exclusive holder:  agent-1 (lease until 2026-11-27 14:00:30 UTC)\n"
        "Pollers (0): none: no worker polls this queue, so its tasks wait\n");
}

}  // namespace
}  // namespace kiln::cli
