// The commands of a completed workflow task (commands.cc): each kind's check refuses what it
// must, with its cause, and nothing of a refused task is applied; what a command leaves pending
// in the run's state is what its event records.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {
namespace {

using testing::EngineHarness;
using testing::Text;

api::Command OfType(api::CommandType type) {
  api::Command command;
  command.set_command_type(type);
  return command;
}

struct Refused {
  std::string name;
  std::vector<api::Command> commands;  // the last one is refused
  api::WorkflowTaskFailedCause cause;
  std::string message;  // as the worker hears it
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
};

std::vector<Refused> RefusedCommands() {
  using C = api::CommandType;
  auto activity = [] { return EngineHarness::ScheduleActivity("a", "t", absl::Minutes(1)); };
  std::vector<Refused> cases;
  cases.push_back({"schedule activity without attributes",
                   {OfType(C::COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK)},
                   api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES,
                   "command 0: schedule activity without attributes"});
  cases.push_back({"schedule activity twice",
                   {activity(), activity()},
                   api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES,
                   "command 1: activity id 'a' is already pending"});
  {
    api::RetryPolicy shrinking;
    shrinking.set_backoff_coefficient(0.5);
    cases.push_back({"schedule activity with a bad retry policy",
                     {EngineHarness::ScheduleActivity("a", "t", absl::Minutes(1), shrinking)},
                     api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES,
                     "command 0: retry_policy: backoff_coefficient must be between 1 and"});
    api::RetryPolicy not_a_number;
    not_a_number.set_backoff_coefficient(std::nan(""));
    cases.push_back({"schedule activity with a NaN backoff",
                     {EngineHarness::ScheduleActivity("a", "t", absl::Minutes(1), not_a_number)},
                     api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES,
                     "command 0: retry_policy: backoff_coefficient must be between 1 and"});
  }
  {
    api::Command cancel = OfType(C::COMMAND_TYPE_REQUEST_CANCEL_ACTIVITY_TASK);
    cancel.mutable_request_cancel_activity_task_command_attributes()->set_scheduled_event_id(99);
    cases.push_back({"cancel an activity that is not pending",
                     {cancel},
                     api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                     "command 0: no pending activity scheduled by event 99"});
  }
  cases.push_back({"start a timer of no duration",
                   {EngineHarness::StartTimer("t", absl::ZeroDuration())},
                   api::WORKFLOW_TASK_FAILED_CAUSE_BAD_START_TIMER_ATTRIBUTES,
                   "command 0: start_to_fire_timeout must be positive"});
  cases.push_back({"start a timer twice",
                   {EngineHarness::StartTimer("t", absl::Minutes(1)),
                    EngineHarness::StartTimer("t", absl::Minutes(1))},
                   api::WORKFLOW_TASK_FAILED_CAUSE_BAD_START_TIMER_ATTRIBUTES,
                   "command 1: timer id 't' is already pending"});
  {
    api::Command cancel = OfType(C::COMMAND_TYPE_CANCEL_TIMER);
    cancel.mutable_cancel_timer_command_attributes()->set_timer_id("x");
    cases.push_back({"cancel a timer that is not pending",
                     {cancel},
                     api::WORKFLOW_TASK_FAILED_CAUSE_BAD_CANCEL_TIMER_ATTRIBUTES,
                     "command 0: no pending timer 'x'"});
  }
  cases.push_back({"record a marker without a name",
                   {OfType(C::COMMAND_TYPE_RECORD_MARKER)},
                   api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                   "command 0: marker_name is empty"});
  {
    api::Command upsert = OfType(C::COMMAND_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES);
    (*upsert.mutable_upsert_workflow_search_attributes_command_attributes()
          ->mutable_search_attributes()
          ->mutable_indexed_fields())["bad-name"] = Text("1").payloads(0);
    cases.push_back({"upsert a search attribute with a bad name",
                     {upsert},
                     api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                     "command 0: "});
  }
  {
    api::Command complete = EngineHarness::CompleteWorkflow("");
    complete.mutable_complete_workflow_execution_command_attributes()
        ->mutable_result()
        ->add_payloads()
        ->set_data(std::string((2 << 20) + 1, 'x'));
    cases.push_back({"complete with a result too large",
                     {complete},
                     api::WORKFLOW_TASK_FAILED_CAUSE_BAD_COMPLETE_WORKFLOW_EXECUTION_ATTRIBUTES,
                     "command 0: result exceeds 2097152 bytes"});
  }
  cases.push_back({"a command after the run closed",
                   {EngineHarness::CompleteWorkflow("\"done\""),
                    EngineHarness::StartTimer("t", absl::Minutes(1))},
                   api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                   "command 1: commands after the workflow closed"});
  cases.push_back({"start a child without a workflow id",
                   {OfType(C::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION)},
                   api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                   "command 0: child workflow_id must be 1..1000 bytes without NUL"});
  {
    api::Command signal = OfType(C::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION);
    signal.mutable_signal_external_workflow_execution_command_attributes()
        ->mutable_execution()
        ->set_workflow_id("other");
    cases.push_back({"signal another workflow without a signal name",
                     {signal},
                     api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                     "command 0: signal external needs a workflow id and a signal name"});
  }
  cases.push_back({"cancel another workflow without its id",
                   {OfType(C::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION)},
                   api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                   "command 0: cancel external needs a workflow id"});
  cases.push_back({"modify workflow properties without a memo",
                   {OfType(C::COMMAND_TYPE_MODIFY_WORKFLOW_PROPERTIES)},
                   api::WORKFLOW_TASK_FAILED_CAUSE_BAD_MODIFY_WORKFLOW_PROPERTIES_ATTRIBUTES,
                   "command 0: upserted_memo is not set"});
  {
    api::Command modify = OfType(C::COMMAND_TYPE_MODIFY_WORKFLOW_PROPERTIES);
    (*modify.mutable_modify_workflow_properties_command_attributes()
          ->mutable_upserted_memo()
          ->mutable_fields())["big"]
        .set_data(std::string((32 << 10) + 1, 'x'));
    cases.push_back({"modify workflow properties past the memo's limit",
                     {modify},
                     api::WORKFLOW_TASK_FAILED_CAUSE_BAD_MODIFY_WORKFLOW_PROPERTIES_ATTRIBUTES,
                     "command 0: the memo would be "});
  }
  cases.push_back({"a command of no known type",
                   {OfType(C::COMMAND_TYPE_UNSPECIFIED)},
                   api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
                   "command 0: command type COMMAND_TYPE_UNSPECIFIED is not supported"});
  return cases;
}

TEST_CASE("Each kind of command refuses bad attributes with its cause and nothing is applied") {
  for (const Refused& refused : RefusedCommands()) {
    SECTION(refused.name) {
      EngineHarness h;
      std::string run = h.Start("wf").value();
      auto wt = h.PollWorkflowTask();
      REQUIRE(wt.has_value());
      absl::Status status = h.Complete(*wt, refused.commands);
      REQUIRE(status.code() == refused.code);
      CHECK(std::string(status.message()).rfind(refused.message, 0) == 0);
      // Started, scheduled, started, failed, and the next task: none of the commands' events.
      api::History history = h.History(run);
      REQUIRE(history.events_size() == 5);
      const api::HistoryEvent& failed = history.events(3);
      REQUIRE(failed.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_FAILED);
      CHECK(failed.workflow_task_failed_event_attributes().cause() == refused.cause);
      auto described = h.Describe(run);
      CHECK(described.pending_activities_size() == 0);
      CHECK(described.workflow_execution_info().status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING);
    }
  }
}

internal::ExecutionState StoredState(EngineHarness& h, const std::string& run_id) {
  auto bytes = h.store().Get(Table::kExecutions, keys::Execution(run_id)).value();
  REQUIRE(bytes.has_value());
  internal::ExecutionState state;
  REQUIRE(state.ParseFromString(*bytes));
  return state;
}

TEST_CASE("What a command leaves pending in the run's state is what its event records") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());

  api::Command activity = EngineHarness::ScheduleActivity("a", "t", absl::Minutes(5));
  auto* a = activity.mutable_schedule_activity_task_command_attributes();
  ToProto(absl::Minutes(2), a->mutable_schedule_to_close_timeout());  // caps start-to-close
  ToProto(absl::Seconds(10), a->mutable_heartbeat_timeout());
  a->mutable_header()->mutable_fields()->insert({"h", Text("1").payloads(0)});
  api::Command child;
  child.set_command_type(api::COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION);
  child.mutable_start_child_workflow_execution_command_attributes()->set_workflow_id("kid");
  child.mutable_start_child_workflow_execution_command_attributes()
      ->mutable_workflow_type()
      ->set_name("KidType");
  api::Command signal;
  signal.set_command_type(api::COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION);
  auto* s = signal.mutable_signal_external_workflow_execution_command_attributes();
  s->mutable_execution()->set_workflow_id("other");
  s->set_signal_name("ping");
  *s->mutable_input() = Text("\"hello\"");
  s->set_control("c");
  api::Command cancel;
  cancel.set_command_type(api::COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION);
  cancel.mutable_request_cancel_external_workflow_execution_command_attributes()->set_workflow_id(
      "other");
  REQUIRE(h.Complete(*wt, {activity, EngineHarness::StartTimer("t", absl::Minutes(3)), child,
                           signal, cancel})
              .ok());

  const internal::ExecutionState state = StoredState(h, run);
  const api::History history = h.History(run);
  REQUIRE(history.events_size() == 9);  // 4 of the task, 5 of its commands

  const api::HistoryEvent& scheduled = history.events(4);
  const auto& e = scheduled.activity_task_scheduled_event_attributes();
  const internal::ActivityInfo& info = state.activities().at(scheduled.event_id());
  CHECK(info.activity_id() == "a");
  CHECK(info.activity_type() == e.activity_type().name());
  CHECK(info.task_queue() == "q");
  CHECK(e.task_queue().name() == "q");
  CHECK(info.input().SerializeAsString() == e.input().SerializeAsString());
  CHECK(info.header().SerializeAsString() == e.header().SerializeAsString());
  CHECK(FromProto(e.start_to_close_timeout()) == absl::Minutes(2));
  CHECK(FromProto(info.start_to_close_timeout()) == absl::Minutes(2));
  CHECK(FromProto(info.schedule_to_close_timeout()) == absl::Minutes(2));
  CHECK(FromProto(info.heartbeat_timeout()) == absl::Seconds(10));
  CHECK(info.retry_policy().SerializeAsString() == e.retry_policy().SerializeAsString());
  CHECK(FromProto(info.retry_policy().initial_interval()) == absl::Seconds(1));
  CHECK(info.attempt() == 1);
  CHECK(FromProto(info.scheduled_time()) == FromProto(scheduled.event_time()));
  CHECK(info.task_id() != 0);
  CHECK(!info.schedule_to_close_timer_key().empty());

  const api::HistoryEvent& timer_started = history.events(5);
  const internal::TimerInfo& timer = state.timers().at("t");
  CHECK(timer.started_event_id() == timer_started.event_id());
  CHECK(FromProto(timer.fire_time()) == FromProto(timer_started.event_time()) + absl::Minutes(3));

  const api::HistoryEvent& initiated = history.events(6);
  const internal::ChildInfo& kid = state.children().at(initiated.event_id());
  CHECK(kid.namespace_() ==
        initiated.start_child_workflow_execution_initiated_event_attributes().namespace_());
  CHECK(kid.workflow_id() == "kid");
  CHECK(kid.workflow_type() == "KidType");
  CHECK(kid.parent_close_policy() == api::PARENT_CLOSE_POLICY_TERMINATE);
  CHECK(kid.initiated_event_id() == initiated.event_id());

  const internal::ExternalRequest& ping =
      state.external_requests().at(history.events(7).event_id());
  CHECK(ping.kind() == "signal");
  CHECK(ping.workflow_id() == "other");
  CHECK(ping.signal_name() == "ping");
  CHECK(ping.control() == "c");
  CHECK(ping.input().SerializeAsString() == Text("\"hello\"").SerializeAsString());
  const internal::ExternalRequest& stop =
      state.external_requests().at(history.events(8).event_id());
  CHECK(stop.kind() == "cancel");
  CHECK(stop.workflow_id() == "other");
  CHECK(stop.namespace_() == ping.namespace_());
}

api::Payload Json(const std::string& data) {
  api::Payload payload;
  (*payload.mutable_metadata())["encoding"] = "json/plain";
  payload.set_data(data);
  return payload;
}

std::map<std::string, std::string> MemoData(const api::Memo& memo) {
  std::map<std::string, std::string> fields;
  for (const auto& [name, value] : memo.fields()) fields[name] = value.data();
  return fields;
}

TEST_CASE("ModifyWorkflowProperties merges its memo into the run's and a reset rebuilds it") {
  EngineHarness h;
  api::StartWorkflowExecutionRequest start;
  auto& memo = *start.mutable_memo()->mutable_fields();
  memo["team"] = Json("\"build\"");
  memo["draft"] = Json("\"v1\"");
  memo["stale"] = Json("1");
  std::string run = h.Start("wf", start).value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());

  api::Command modify = OfType(api::COMMAND_TYPE_MODIFY_WORKFLOW_PROPERTIES);
  auto& upserted =
      *modify.mutable_modify_workflow_properties_command_attributes()->mutable_upserted_memo();
  (*upserted.mutable_fields())["stage"] = Json("\"done\"");
  // Removed: null as the SDKs encode it, an empty Payload, an empty JSON list.
  (*(*upserted.mutable_fields())["draft"].mutable_metadata())["encoding"] = "binary/null";
  (*upserted.mutable_fields())["stale"] = api::Payload();
  (*upserted.mutable_fields())["missing"] = Json("[]");
  REQUIRE(h.Complete(*wt, {modify, EngineHarness::StartTimer("t", absl::Minutes(1))}).ok());

  const std::map<std::string, std::string> merged{{"team", "\"build\""}, {"stage", "\"done\""}};
  CHECK(MemoData(h.Describe(run).workflow_execution_info().memo()) == merged);
  const api::History history = h.History(run);
  const api::HistoryEvent& modified = history.events(4);
  REQUIRE(modified.event_type() == api::EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED);
  CHECK(
      modified.workflow_properties_modified_event_attributes().workflow_task_completed_event_id() ==
      4);
  CHECK(modified.workflow_properties_modified_event_attributes().upserted_memo().fields_size() ==
        4);
  // A list answers with the memo as it is now.
  api::ListWorkflowExecutionsRequest list;
  auto listed = h.engine().ListWorkflowExecutions(list);
  REQUIRE(listed.ok());
  REQUIRE(listed->executions_size() == 1);
  CHECK(MemoData(listed->executions(0).memo()) == merged);

  // A reset to the first workflow task replays the history before the change: the start's memo.
  api::ResetWorkflowExecutionRequest reset;
  reset.mutable_workflow_execution()->set_workflow_id("wf");
  reset.set_reset_point(api::RESET_POINT_FIRST_WORKFLOW_TASK);
  reset.set_reason("test");
  auto reset_run = h.engine().ResetWorkflowExecution(reset);
  REQUIRE(reset_run.ok());
  CHECK(MemoData(h.Describe(reset_run->run_id()).workflow_execution_info().memo()) ==
        std::map<std::string, std::string>{
            {"team", "\"build\""}, {"draft", "\"v1\""}, {"stale", "1"}});
}

}  // namespace
}  // namespace kiln::orchestrator
