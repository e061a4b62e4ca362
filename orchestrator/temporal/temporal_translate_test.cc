#include "orchestrator/temporal/temporal_translate.h"

#include <catch2/catch.hpp>

#include <thread>

#include "kiln/api/v1/workflow_service.pb.h"
#include "temporal/api/workflowservice/v1/request_response.pb.h"

namespace kiln::orchestrator {
namespace {

namespace kapi = ::kiln::api::v1;
namespace twf = ::temporal::api::workflowservice::v1;
namespace thistory = ::temporal::api::history::v1;
namespace tcommand = ::temporal::api::command::v1;
namespace tenums = ::temporal::api::enums::v1;

TEST_CASE("Temporal translation: a history event keeps its kind and attributes across numbering") {
  kapi::HistoryEvent event;
  event.set_event_id(7);
  event.set_event_type(kapi::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
  auto* attributes = event.mutable_workflow_execution_continued_as_new_event_attributes();
  attributes->set_new_execution_run_id("run-2");
  attributes->mutable_task_queue()->set_name("q");
  attributes->mutable_input()->add_payloads()->set_data("42");

  thistory::HistoryEvent translated;
  REQUIRE(ToTemporal(event, &translated).ok());
  CHECK(translated.event_id() == 7);
  CHECK(translated.event_type() == tenums::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
  REQUIRE(translated.has_workflow_execution_continued_as_new_event_attributes());
  const auto& t = translated.workflow_execution_continued_as_new_event_attributes();
  CHECK(t.new_execution_run_id() == "run-2");
  CHECK(t.task_queue().name() == "q");
  CHECK(t.task_queue().kind() == tenums::TASK_QUEUE_KIND_NORMAL);
  CHECK(t.input().payloads(0).data() == "42");
}

TEST_CASE("Temporal translation: sdk_metadata of a completion reaches the engine's request") {
  twf::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token("tok");
  request.mutable_sdk_metadata()->add_core_used_flags(1);
  request.mutable_sdk_metadata()->add_lang_used_flags(3);
  request.mutable_sdk_metadata()->set_sdk_name("temporal-typescript");
  tcommand::Command* command = request.add_commands();
  command->set_command_type(tenums::COMMAND_TYPE_START_TIMER);
  command->mutable_start_timer_command_attributes()->set_timer_id("1");
  command->mutable_start_timer_command_attributes()->mutable_start_to_fire_timeout()->set_seconds(
      2);

  kapi::RespondWorkflowTaskCompletedRequest engine;
  REQUIRE(ToKiln(request, &engine).ok());
  CHECK(engine.task_token() == "tok");
  CHECK(engine.sdk_metadata().core_used_flags(0) == 1);
  CHECK(engine.sdk_metadata().lang_used_flags(0) == 3);
  CHECK(engine.sdk_metadata().sdk_name() == "temporal-typescript");
  REQUIRE(engine.commands_size() == 1);
  CHECK(engine.commands(0).command_type() == kapi::COMMAND_TYPE_START_TIMER);
  CHECK(engine.commands(0).start_timer_command_attributes().start_to_fire_timeout().seconds() == 2);
}

TEST_CASE("Temporal translation: a command Kiln lacks is UNIMPLEMENTED naming it") {
  twf::RespondWorkflowTaskCompletedRequest request;
  request.add_commands()->set_command_type(tenums::COMMAND_TYPE_SCHEDULE_NEXUS_OPERATION);
  kapi::RespondWorkflowTaskCompletedRequest engine;
  absl::Status status = ToKiln(request, &engine);
  CHECK(status.code() == absl::StatusCode::kUnimplemented);
  CHECK(std::string(status.message()) ==
        "commands[0].command_type: COMMAND_TYPE_SCHEDULE_NEXUS_OPERATION is not supported by "
        "Kiln yet");
}

TEST_CASE("Temporal translation: a failure's fields Kiln lacks survive the round trip") {
  twf::RespondActivityTaskFailedRequest request;
  request.mutable_failure()->set_message("boom");
  request.mutable_failure()->mutable_encoded_attributes()->set_data("enc");
  request.mutable_failure()->mutable_application_failure_info()->set_type("MyError");

  kapi::RespondActivityTaskFailedRequest engine;
  REQUIRE(ToKiln(request, &engine).ok());
  CHECK(engine.failure().message() == "boom");
  CHECK(engine.failure().application_failure_info().type() == "MyError");

  twf::RespondActivityTaskFailedRequest back;
  REQUIRE(ToTemporal(engine, &back).ok());
  CHECK(back.failure().encoded_attributes().data() == "enc");
  CHECK(back.failure().application_failure_info().type() == "MyError");
}

TEST_CASE("Temporal translation: workflow task failed causes map by name not number") {
  twf::RespondWorkflowTaskFailedRequest request;
  request.set_cause(tenums::WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR);
  kapi::RespondWorkflowTaskFailedRequest engine;
  REQUIRE(ToKiln(request, &engine).ok());
  CHECK(engine.cause() == kapi::WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR);
}

TEST_CASE("Temporal translation: untyped search attributes are typed from their one value") {
  twf::StartWorkflowExecutionRequest request;
  auto& fields = *request.mutable_search_attributes()->mutable_indexed_fields();
  auto untyped = [](const std::string& json) {
    ::temporal::api::common::v1::Payload payload;
    (*payload.mutable_metadata())["encoding"] = "json/plain";
    payload.set_data(json);
    return payload;
  };
  fields["Region"] = untyped(R"(["eu"])");
  fields["Priority"] = untyped("[3]");
  fields["Urgent"] = untyped("[true]");
  fields["Tags"] = untyped(R"(["a","b"])");  // a KeywordList: Kiln has none
  fields["Typed"] = untyped(R"("x")");
  (*fields["Typed"].mutable_metadata())["type"] = "Keyword";

  kapi::StartWorkflowExecutionRequest translated;
  REQUIRE(ToKiln(request, &translated).ok());
  const auto& out = translated.search_attributes().indexed_fields();
  CHECK(out.at("Region").metadata().at("type") == "Keyword");
  CHECK(out.at("Region").data() == R"("eu")");
  CHECK(out.at("Priority").metadata().at("type") == "Int");
  CHECK(out.at("Priority").data() == "3");
  CHECK(out.at("Urgent").metadata().at("type") == "Bool");
  CHECK(!out.at("Tags").metadata().contains("type"));  // the engine refuses it, naming it
  CHECK(out.at("Typed").data() == R"("x")");
}

TEST_CASE("Temporal translation: a reset reapplies signals unless told not to") {
  twf::ResetWorkflowExecutionRequest t;
  t.set_workflow_task_finish_event_id(4);
  t.set_request_id("r1");
  kapi::ResetWorkflowExecutionRequest k;
  REQUIRE(ToKiln(t, &k).ok());
  REQUIRE(ResetToKiln(t, k).ok());
  CHECK(k.workflow_task_finish_event_id() == 4);
  CHECK(k.request_id() == "r1");
  CHECK_FALSE(k.exclude_signals());

  t.add_reset_reapply_exclude_types(tenums::RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL);
  REQUIRE(ResetToKiln(t, k).ok());
  CHECK(k.exclude_signals());

  t.add_post_reset_operations();
  absl::Status refused = ResetToKiln(t, k);
  CHECK(refused.code() == absl::StatusCode::kUnimplemented);
  CHECK(std::string(refused.message()) == "post_reset_operations is not supported by Kiln yet");
}

TEST_CASE("Temporal translation: a task queue's description") {
  twf::DescribeTaskQueueRequest t;
  t.mutable_task_queue()->set_name("q");
  t.set_task_queue_type(tenums::TASK_QUEUE_TYPE_ACTIVITY);
  t.set_report_stats(true);
  kapi::DescribeTaskQueueRequest k;
  REQUIRE(ToKiln(t, &k).ok());
  REQUIRE(DescribeTaskQueueToKiln(t, k).ok());
  CHECK(k.task_queue().name() == "q");
  CHECK(k.activity());

  kapi::DescribeTaskQueueResponse engine;
  engine.add_pollers()->set_identity("worker-1");
  engine.set_backlog_count(3);
  engine.mutable_oldest_task_age()->set_seconds(5);
  twf::DescribeTaskQueueResponse answer;
  REQUIRE(ToTemporal(engine, &answer).ok());
  DescribeTaskQueueToTemporal(t, engine, answer);
  REQUIRE(answer.pollers_size() == 1);
  CHECK(answer.pollers(0).identity() == "worker-1");
  CHECK(answer.stats().approximate_backlog_count() == 3);
  CHECK(answer.stats().approximate_backlog_age().seconds() == 5);

  t.mutable_task_queue()->set_kind(tenums::TASK_QUEUE_KIND_STICKY);
  CHECK(DescribeTaskQueueToKiln(t, k).code() == absl::StatusCode::kUnimplemented);
}

// The copy keeps a plan per pair of message types per thread, made the first time the pair is
// met, usually in the middle of copying its parent: a thread's first copy of a history of many
// kinds makes a dozen plans while outer copies are using theirs.
TEST_CASE("Temporal translation: a thread's first copy of a history of many kinds is whole") {
  kapi::PollWorkflowTaskQueueResponse engine;
  engine.set_task_token("tok");
  auto* events = engine.mutable_history()->mutable_events();
  auto add = [&](kapi::EventType type) {
    kapi::HistoryEvent* event = events->Add();
    event->set_event_id(events->size());
    event->set_event_type(type);
    return event;
  };
  add(kapi::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
      ->mutable_workflow_execution_started_event_attributes()
      ->mutable_task_queue()
      ->set_name("q");
  add(kapi::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)
      ->mutable_workflow_task_scheduled_event_attributes()
      ->set_attempt(1);
  add(kapi::EVENT_TYPE_WORKFLOW_TASK_STARTED)
      ->mutable_workflow_task_started_event_attributes()
      ->set_scheduled_event_id(2);
  add(kapi::EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
      ->mutable_workflow_task_completed_event_attributes()
      ->set_started_event_id(3);
  add(kapi::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      ->mutable_activity_task_scheduled_event_attributes()
      ->mutable_activity_type()
      ->set_name("echo");
  add(kapi::EVENT_TYPE_ACTIVITY_TASK_STARTED)
      ->mutable_activity_task_started_event_attributes()
      ->set_scheduled_event_id(5);
  add(kapi::EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
      ->mutable_activity_task_completed_event_attributes()
      ->mutable_result()
      ->add_payloads()
      ->set_data("x");
  add(kapi::EVENT_TYPE_TIMER_STARTED)->mutable_timer_started_event_attributes()->set_timer_id("t");
  add(kapi::EVENT_TYPE_TIMER_FIRED)->mutable_timer_fired_event_attributes()->set_timer_id("t");
  add(kapi::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
      ->mutable_workflow_execution_signaled_event_attributes()
      ->set_signal_name("go");
  add(kapi::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
      ->mutable_workflow_execution_completed_event_attributes()
      ->mutable_result()
      ->add_payloads()
      ->set_data("done");

  twf::PollWorkflowTaskQueueResponse translated;
  absl::Status status;
  std::thread([&] { status = ToTemporal(engine, &translated); }).join();
  REQUIRE(status.ok());
  const auto& out = translated.history().events();
  REQUIRE(out.size() == 11);
  CHECK(out[0].workflow_execution_started_event_attributes().task_queue().name() == "q");
  CHECK(out[1].workflow_task_scheduled_event_attributes().attempt() == 1);
  CHECK(out[2].workflow_task_started_event_attributes().scheduled_event_id() == 2);
  CHECK(out[3].workflow_task_completed_event_attributes().started_event_id() == 3);
  CHECK(out[4].activity_task_scheduled_event_attributes().activity_type().name() == "echo");
  CHECK(out[5].activity_task_started_event_attributes().scheduled_event_id() == 5);
  CHECK(out[6].activity_task_completed_event_attributes().result().payloads(0).data() == "x");
  CHECK(out[7].timer_started_event_attributes().timer_id() == "t");
  CHECK(out[8].timer_fired_event_attributes().timer_id() == "t");
  CHECK(out[9].workflow_execution_signaled_event_attributes().signal_name() == "go");
  CHECK(out[10].event_type() == tenums::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  CHECK(out[10].workflow_execution_completed_event_attributes().result().payloads(0).data() ==
        "done");
}

}  // namespace
}  // namespace kiln::orchestrator
