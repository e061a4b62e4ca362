// State-machine tests of the history engine: fake clock, in-memory store, every transition
// driven explicitly by the test.
#include "orchestrator/history/history_engine.h"

#include <catch2/catch.hpp>

#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"
#include "orchestrator/history/limits.h"

namespace kiln::orchestrator {
namespace {

using testing::EngineHarness;
using testing::Text;
using E = api::EventType;

api::RetryPolicy Retry(int max_attempts, absl::Duration initial = absl::Seconds(1)) {
  api::RetryPolicy policy;
  policy.set_maximum_attempts(max_attempts);
  ToProto(initial, policy.mutable_initial_interval());
  return policy;
}

absl::Status CompleteActivity(EngineHarness& h, const api::PollActivityTaskQueueResponse& task,
                              const std::string& result) {
  api::RespondActivityTaskCompletedRequest request;
  request.set_task_token(task.task_token());
  *request.mutable_result() = Text(result);
  return h.engine().RespondActivityTaskCompleted(request).status();
}

absl::Status FailActivity(EngineHarness& h, const api::PollActivityTaskQueueResponse& task,
                          const std::string& type, bool non_retryable = false) {
  api::RespondActivityTaskFailedRequest request;
  request.set_task_token(task.task_token());
  request.mutable_failure()->set_message("boom");
  request.mutable_failure()->mutable_application_failure_info()->set_type(type);
  request.mutable_failure()->mutable_application_failure_info()->set_non_retryable(non_retryable);
  return h.engine().RespondActivityTaskFailed(request);
}

void RequireGapless(const api::History& history) {
  for (int i = 0; i < history.events_size(); ++i) {
    REQUIRE(history.events(i).event_id() == i + 1);
  }
}

TEST_CASE("A workflow with one activity runs to completion with a Temporal-shaped history") {
  EngineHarness h;
  std::string run = h.Start("wf-1").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  REQUIRE(wt->history().events_size() == 3);
  REQUIRE(wt->previous_started_event_id() == 0);
  REQUIRE(
      h.Complete(*wt, {EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10))}).ok());

  auto activity = h.PollActivityTask();
  REQUIRE(activity.has_value());
  REQUIRE(activity->activity_type().name() == "greet");
  REQUIRE(activity->attempt() == 1);
  REQUIRE(CompleteActivity(h, *activity, "\"hello\"").ok());

  auto wt2 = h.PollWorkflowTask();
  REQUIRE(wt2.has_value());
  REQUIRE(wt2->previous_started_event_id() == 3);
  REQUIRE(h.Complete(*wt2, {EngineHarness::CompleteWorkflow("\"done\"")}).ok());

  REQUIRE(h.EventTypes(run) ==
          std::vector<E>{
              E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
              E::EVENT_TYPE_WORKFLOW_TASK_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
              E::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, E::EVENT_TYPE_ACTIVITY_TASK_STARTED,
              E::EVENT_TYPE_ACTIVITY_TASK_COMPLETED, E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
              E::EVENT_TYPE_WORKFLOW_TASK_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
              E::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED});
  api::History history = h.History(run);
  RequireGapless(history);
  const auto& completed = history.events(6).activity_task_completed_event_attributes();
  REQUIRE(completed.scheduled_event_id() == 5);
  REQUIRE(completed.started_event_id() == 6);
  REQUIRE(h.Describe(run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  // Nothing is left behind in the queues or the timer table... except stale timers already
  // deleted on fire; the backlog is empty.
  REQUIRE(h.Backlog(keys::TaskKind::kWorkflow, "q").empty());
  REQUIRE(h.Backlog(keys::TaskKind::kActivity, "q").empty());
}

// The stored timers, as "TYPE" or "TYPE/TIMEOUT_TYPE", sorted; those in the retention table
// as "retention:TYPE".
std::vector<std::string> StoredTimers(EngineHarness& h) {
  std::vector<std::string> timers;
  for (Table table : {Table::kTimers, Table::kRetention}) {
    REQUIRE(h.store()
                .Scan(table, "", "", 1000,
                      [&](std::string_view, std::string_view value) {
                        internal::TimerTask task;
                        REQUIRE(task.ParseFromArray(value.data(), static_cast<int>(value.size())));
                        std::string name = internal::TimerTaskType_Name(task.type()).substr(16);
                        if (task.timeout_type() != api::TIMEOUT_TYPE_UNSPECIFIED) {
                          name += "/" + api::TimeoutType_Name(task.timeout_type()).substr(13);
                        }
                        if (table == Table::kRetention) name = "retention:" + name;
                        timers.push_back(std::move(name));
                        return true;
                      })
                .ok());
  }
  std::sort(timers.begin(), timers.end());
  return timers;
}
using Timers = std::vector<std::string>;

TEST_CASE("Tasks that end take their timeout timers with them") {
  EngineHarness h;
  std::string run = h.Start("wf-timers").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  // The started task's start-to-close timer.
  CHECK(StoredTimers(h) == Timers{"WORKFLOW_TASK_TIMEOUT/START_TO_CLOSE"});
  REQUIRE(
      h.Complete(*wt, {EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10))}).ok());
  CHECK(StoredTimers(h).empty());  // the task's timer went with its completion
  auto activity = h.PollActivityTask();
  REQUIRE(activity.has_value());
  CHECK(StoredTimers(h) == Timers{"ACTIVITY_TIMEOUT/START_TO_CLOSE"});
  REQUIRE(CompleteActivity(h, *activity, "\"hello\"").ok());
  auto wt2 = h.PollWorkflowTask();
  REQUIRE(wt2.has_value());
  CHECK(StoredTimers(h) == Timers{"WORKFLOW_TASK_TIMEOUT/START_TO_CLOSE"});
  REQUIRE(h.Complete(*wt2, {EngineHarness::CompleteWorkflow("\"done\"")}).ok());
  // Only the closed run's retention timer is left, in its own table: nothing fires stale later.
  CHECK(StoredTimers(h) == Timers{"retention:DELETE_HISTORY"});
  CHECK(h.Describe(run).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
}

TEST_CASE("Every timeout timer goes once what it guards is over") {
  EngineHarness h;
  api::StartWorkflowExecutionRequest start;
  ToProto(absl::Hours(1), start.mutable_workflow_run_timeout());
  std::string run = h.Start("wf-all-timers", start).value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  CHECK(StoredTimers(h) == Timers{"WORKFLOW_RUN_TIMEOUT", "WORKFLOW_TASK_TIMEOUT/START_TO_CLOSE"});

  auto with_all_timeouts = [](const std::string& id) {
    api::Command command = EngineHarness::ScheduleActivity(id, "greet", absl::Seconds(10));
    auto* a = command.mutable_schedule_activity_task_command_attributes();
    ToProto(absl::Seconds(30), a->mutable_schedule_to_start_timeout());
    ToProto(absl::Minutes(5), a->mutable_schedule_to_close_timeout());
    ToProto(absl::Seconds(3), a->mutable_heartbeat_timeout());
    return command;
  };
  // a1 is polled; a2 is started eagerly in the transition that schedules it, so its
  // schedule-to-start timer is written and deleted in the same batch.
  api::Command eager = with_all_timeouts("a2");
  eager.mutable_schedule_activity_task_command_attributes()->set_request_eager_execution(true);
  api::RespondWorkflowTaskCompletedRequest completed;
  completed.set_task_token(wt->task_token());
  completed.set_identity("worker");
  *completed.add_commands() = with_all_timeouts("a1");
  *completed.add_commands() = eager;
  auto answer = h.engine().RespondWorkflowTaskCompleted(completed);
  REQUIRE(answer.ok());
  REQUIRE(answer->activity_tasks_size() == 1);
  CHECK(StoredTimers(h) ==
        Timers{"ACTIVITY_TIMEOUT/HEARTBEAT", "ACTIVITY_TIMEOUT/SCHEDULE_TO_CLOSE",
               "ACTIVITY_TIMEOUT/SCHEDULE_TO_CLOSE", "ACTIVITY_TIMEOUT/SCHEDULE_TO_START",
               "ACTIVITY_TIMEOUT/START_TO_CLOSE", "WORKFLOW_RUN_TIMEOUT"});

  // Started: a1's schedule-to-start timer goes, its attempt's timers come.
  auto polled = h.PollActivityTask();
  REQUIRE(polled.has_value());
  CHECK(StoredTimers(h) == Timers{"ACTIVITY_TIMEOUT/HEARTBEAT", "ACTIVITY_TIMEOUT/HEARTBEAT",
                                  "ACTIVITY_TIMEOUT/SCHEDULE_TO_CLOSE",
                                  "ACTIVITY_TIMEOUT/SCHEDULE_TO_CLOSE",
                                  "ACTIVITY_TIMEOUT/START_TO_CLOSE",
                                  "ACTIVITY_TIMEOUT/START_TO_CLOSE", "WORKFLOW_RUN_TIMEOUT"});

  // A heartbeat timer that finds a newer heartbeat re-arms: still one per activity.
  api::RecordActivityTaskHeartbeatRequest beat;
  beat.set_task_token(polled->task_token());
  h.Advance(absl::Seconds(2));
  REQUIRE(h.engine().RecordActivityTaskHeartbeat(beat).ok());
  REQUIRE(h.engine()
              .RecordActivityTaskHeartbeat([&] {
                api::RecordActivityTaskHeartbeatRequest b;
                b.set_task_token(answer->activity_tasks(0).task_token());
                return b;
              }())
              .ok());
  h.Advance(absl::Seconds(2));
  CHECK(StoredTimers(h) == Timers{"ACTIVITY_TIMEOUT/HEARTBEAT", "ACTIVITY_TIMEOUT/HEARTBEAT",
                                  "ACTIVITY_TIMEOUT/SCHEDULE_TO_CLOSE",
                                  "ACTIVITY_TIMEOUT/SCHEDULE_TO_CLOSE",
                                  "ACTIVITY_TIMEOUT/START_TO_CLOSE",
                                  "ACTIVITY_TIMEOUT/START_TO_CLOSE", "WORKFLOW_RUN_TIMEOUT"});

  // Both complete: every activity timer goes with them.
  REQUIRE(CompleteActivity(h, *polled, "one").ok());
  REQUIRE(CompleteActivity(h, answer->activity_tasks(0), "two").ok());
  auto wt2 = h.PollWorkflowTask();
  REQUIRE(wt2.has_value());
  CHECK(StoredTimers(h) == Timers{"WORKFLOW_RUN_TIMEOUT", "WORKFLOW_TASK_TIMEOUT/START_TO_CLOSE"});
  // The run closes before its timeout: that timer goes too.
  REQUIRE(h.Complete(*wt2, {EngineHarness::CompleteWorkflow("\"done\"")}).ok());
  CHECK(StoredTimers(h) == Timers{"retention:DELETE_HISTORY"});
  CHECK(h.Describe(run).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
}

TEST_CASE("An activity retried after a timeout leaves one timer set per attempt") {
  EngineHarness h;
  std::string run = h.Start("wf-retry-timers").value();
  auto wt = h.PollWorkflowTask();
  api::Command command = EngineHarness::ScheduleActivity("a1", "slow", absl::Seconds(10), Retry(3));
  ToProto(absl::Seconds(2),
          command.mutable_schedule_activity_task_command_attributes()->mutable_heartbeat_timeout());
  REQUIRE(h.Complete(*wt, {command}).ok());
  auto first = h.PollActivityTask();
  REQUIRE(first.has_value());
  CHECK(StoredTimers(h) == Timers{"ACTIVITY_TIMEOUT/HEARTBEAT", "ACTIVITY_TIMEOUT/START_TO_CLOSE"});
  // No heartbeat: the attempt times out and backs off; its start-to-close timer goes with it.
  h.Advance(absl::Seconds(2));
  CHECK(StoredTimers(h) == Timers{"ACTIVITY_RETRY"});
  h.Advance(absl::Seconds(1));
  auto second = h.PollActivityTask();
  REQUIRE(second.has_value());
  CHECK(second->attempt() == 2);
  CHECK(StoredTimers(h) == Timers{"ACTIVITY_TIMEOUT/HEARTBEAT", "ACTIVITY_TIMEOUT/START_TO_CLOSE"});
  REQUIRE(CompleteActivity(h, *second, "ok").ok());
  CHECK(StoredTimers(h).empty());  // the next workflow task is not started yet
  CHECK(h.Describe(run).pending_activities_size() == 0);
}

TEST_CASE("A failed activity is retried with backoff and the attempt count survives") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(
      h.Complete(*wt, {EngineHarness::ScheduleActivity("a", "flaky", absl::Seconds(10), Retry(5))})
          .ok());
  auto first = h.PollActivityTask();
  REQUIRE(FailActivity(h, *first, "Transient").ok());
  // Backing off for 1 s: nothing to poll yet.
  REQUIRE_FALSE(h.PollActivityTask().has_value());
  REQUIRE(h.Describe(run).pending_activities(0).attempt() == 2);
  REQUIRE(h.Describe(run).pending_activities(0).last_failure().message() == "boom");
  h.Advance(absl::Milliseconds(999));
  REQUIRE_FALSE(h.PollActivityTask().has_value());
  h.Advance(absl::Milliseconds(1));
  auto second = h.PollActivityTask();
  REQUIRE(second.has_value());
  REQUIRE(second->attempt() == 2);
  // The first attempt's token is stale now and changes nothing.
  REQUIRE(absl::IsFailedPrecondition(CompleteActivity(h, *first, "\"late\"")));
  REQUIRE(FailActivity(h, *second, "Transient").ok());
  h.Advance(absl::Milliseconds(1999));  // Second backoff is 2 s.
  REQUIRE_FALSE(h.PollActivityTask().has_value());
  h.Advance(absl::Milliseconds(1));
  auto third = h.PollActivityTask();
  REQUIRE(third->attempt() == 3);
  REQUIRE(CompleteActivity(h, *third, "\"ok\"").ok());
  // A duplicate completion is refused and changes nothing.
  REQUIRE(absl::IsNotFound(CompleteActivity(h, *third, "\"again\"")));

  api::History history = h.History(run);
  RequireGapless(history);
  // Retries leave no events: one started event carrying the attempt and the last failure.
  REQUIRE(history.events_size() == 8);
  const auto& started = history.events(5).activity_task_started_event_attributes();
  REQUIRE(started.attempt() == 3);
  REQUIRE(started.last_failure().application_failure_info().type() == "Transient");
}

TEST_CASE("Non-retryable failures and exhausted attempts close the activity as failed") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  api::RetryPolicy policy = Retry(2);
  policy.add_non_retryable_error_types("Fatal");
  REQUIRE(h.Complete(*h.PollWorkflowTask(),
                     {EngineHarness::ScheduleActivity("x", "t", absl::Seconds(5), policy),
                      EngineHarness::ScheduleActivity("y", "t", absl::Seconds(5), policy),
                      EngineHarness::ScheduleActivity("z", "t", absl::Seconds(5), policy)})
              .ok());
  auto x = h.PollActivityTask();
  auto y = h.PollActivityTask();
  auto z = h.PollActivityTask();
  REQUIRE(FailActivity(h, *x, "Fatal").ok());                          // listed type
  REQUIRE(FailActivity(h, *y, "Other", /*non_retryable=*/true).ok());  // flagged
  REQUIRE(FailActivity(h, *z, "Other").ok());                          // retried once
  h.Advance(absl::Seconds(1));
  auto z2 = h.PollActivityTask();
  REQUIRE(z2->attempt() == 2);
  REQUIRE(FailActivity(h, *z2, "Other").ok());  // maximum attempts reached
  std::vector<api::RetryState> states;
  api::History history = h.History(run);
  for (const auto& e : history.events()) {
    if (e.event_type() == E::EVENT_TYPE_ACTIVITY_TASK_FAILED) {
      states.push_back(e.activity_task_failed_event_attributes().retry_state());
      REQUIRE(e.activity_task_failed_event_attributes().started_event_id() != 0);
    }
  }
  REQUIRE(states == std::vector<api::RetryState>{api::RETRY_STATE_NON_RETRYABLE_FAILURE,
                                                 api::RETRY_STATE_NON_RETRYABLE_FAILURE,
                                                 api::RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED});
  RequireGapless(h.History(run));
}

TEST_CASE("Activity timeouts: start-to-close retries, schedule-to-start and -to-close are final") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  api::Command stc = EngineHarness::ScheduleActivity("stc", "t", absl::Seconds(5), Retry(2));
  api::Command sts = EngineHarness::ScheduleActivity("sts", "t", absl::Seconds(5), Retry(3));
  ToProto(
      absl::Seconds(3),
      sts.mutable_schedule_activity_task_command_attributes()->mutable_schedule_to_start_timeout());
  sts.mutable_schedule_activity_task_command_attributes()->mutable_task_queue()->set_name("nobody");
  api::Command sc = EngineHarness::ScheduleActivity("sc", "t", absl::Seconds(5), Retry(0));
  ToProto(
      absl::Seconds(8),
      sc.mutable_schedule_activity_task_command_attributes()->mutable_schedule_to_close_timeout());
  sc.mutable_schedule_activity_task_command_attributes()->mutable_task_queue()->set_name("slow");
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {stc, sts, sc}).ok());

  auto attempt1 = h.PollActivityTask();
  REQUIRE(attempt1->activity_id() == "stc");
  auto sc1 = h.PollActivityTask("slow");
  h.Advance(absl::Seconds(3));  // sts: nobody polled "nobody" within 3 s.
  h.Advance(absl::Seconds(2));  // stc attempt 1 and sc attempt 1 time out at 5 s: retried.
  REQUIRE(h.Describe(run).pending_activities_size() == 2);
  h.Advance(absl::Seconds(1));
  auto attempt2 = h.PollActivityTask();
  REQUIRE(attempt2->attempt() == 2);
  auto sc2 = h.PollActivityTask("slow");
  REQUIRE(sc2->attempt() == 2);
  h.Advance(absl::Seconds(2));  // sc: 8 s since scheduled, final.
  h.Advance(absl::Seconds(3));  // stc attempt 2 times out: maximum attempts.
  REQUIRE(h.Describe(run).pending_activities_size() == 0);
  REQUIRE(absl::IsNotFound(CompleteActivity(h, *sc1, "\"late\"")));

  std::map<std::string, api::TimeoutType> timeouts;
  std::map<int64_t, std::string> ids;
  api::History history = h.History(run);
  for (const auto& e : history.events()) {
    if (e.event_type() == E::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      ids[e.event_id()] = e.activity_task_scheduled_event_attributes().activity_id();
    }
    if (e.event_type() == E::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT) {
      const auto& a = e.activity_task_timed_out_event_attributes();
      timeouts[ids[a.scheduled_event_id()]] = a.failure().timeout_failure_info().timeout_type();
    }
  }
  REQUIRE(timeouts["sts"] == api::TIMEOUT_TYPE_SCHEDULE_TO_START);
  REQUIRE(timeouts["sc"] == api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE);
  REQUIRE(timeouts["stc"] == api::TIMEOUT_TYPE_START_TO_CLOSE);
  RequireGapless(h.History(run));
}

TEST_CASE(
    "An attempt whose start-to-close ends with its schedule-to-close times out as the latter") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  // Started at its schedule (no time passes before the poll), start-to-close as long as the
  // schedule-to-close: both end at the same instant, and the workflow hears the final one,
  // whichever of the two fires first (here the schedule-to-close timer; with a Temporal SDK's
  // eager activity, the in-memory start-to-close alarm: temporal_sdk_test).
  api::Command both = EngineHarness::ScheduleActivity("both", "t", absl::Seconds(5), Retry(3));
  ToProto(absl::Seconds(5), both.mutable_schedule_activity_task_command_attributes()
                                ->mutable_schedule_to_close_timeout());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {both}).ok());
  REQUIRE(h.PollActivityTask().has_value());
  h.Advance(absl::Seconds(5));
  REQUIRE(h.Describe(run).pending_activities_size() == 0);
  api::History history = h.History(run);
  int timed_out = 0;
  for (const auto& e : history.events()) {
    if (e.event_type() != E::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT) continue;
    ++timed_out;
    CHECK(e.activity_task_timed_out_event_attributes()
              .failure()
              .timeout_failure_info()
              .timeout_type() == api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE);
  }
  CHECK(timed_out == 1);
  RequireGapless(history);
}

TEST_CASE("Heartbeats keep an activity alive, carry details to the next attempt, and time out") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  api::Command c = EngineHarness::ScheduleActivity("hb", "t", absl::Minutes(10), Retry(2));
  ToProto(absl::Seconds(5),
          c.mutable_schedule_activity_task_command_attributes()->mutable_heartbeat_timeout());
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {c}).ok());
  auto a1 = h.PollActivityTask();
  for (int i = 0; i < 4; ++i) {
    h.Advance(absl::Seconds(4));
    api::RecordActivityTaskHeartbeatRequest hb;
    hb.set_task_token(a1->task_token());
    *hb.mutable_details() = Text(std::to_string(i));
    auto answer = h.engine().RecordActivityTaskHeartbeat(hb);
    REQUIRE(answer.ok());
    REQUIRE_FALSE(answer->cancel_requested());
  }
  REQUIRE(h.Describe(run).pending_activities(0).attempt() == 1);  // 16 s, still alive
  h.Advance(absl::Seconds(5));                                    // silence: timed out
  REQUIRE(h.Describe(run).pending_activities(0).attempt() == 2);
  h.Advance(absl::Seconds(1));
  auto a2 = h.PollActivityTask();
  REQUIRE(a2->attempt() == 2);
  REQUIRE(a2->heartbeat_details().payloads(0).data() == "3");
}

TEST_CASE("Timers fire at their time, a cancelled timer never fires") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {EngineHarness::StartTimer("t1", absl::Hours(1)),
                                             EngineHarness::StartTimer("t2", absl::Hours(2))})
              .ok());
  REQUIRE(h.Describe(run).pending_timers_size() == 2);
  h.Advance(absl::Minutes(59));
  REQUIRE_FALSE(h.PollWorkflowTask().has_value());
  h.Advance(absl::Minutes(1));
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  REQUIRE(wt->history().events(wt->history().events_size() - 3).event_type() ==
          E::EVENT_TYPE_TIMER_FIRED);
  api::Command cancel;
  cancel.set_command_type(api::COMMAND_TYPE_CANCEL_TIMER);
  cancel.mutable_cancel_timer_command_attributes()->set_timer_id("t2");
  REQUIRE(h.Complete(*wt, {cancel}).ok());
  h.Advance(absl::Hours(3));
  REQUIRE_FALSE(h.PollWorkflowTask().has_value());
  auto types = h.EventTypes(run);
  REQUIRE(std::count(types.begin(), types.end(), E::EVENT_TYPE_TIMER_FIRED) == 1);
  REQUIRE(types.back() == E::EVENT_TYPE_TIMER_CANCELED);
}

TEST_CASE("A workflow task that times out is scheduled again with the next attempt") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  auto wt1 = h.PollWorkflowTask();
  h.Advance(absl::Seconds(10));  // default workflow task timeout
  auto wt2 = h.PollWorkflowTask();
  REQUIRE(wt2.has_value());
  REQUIRE(wt2->attempt() == 2);
  REQUIRE(absl::IsFailedPrecondition(h.Complete(*wt1, {EngineHarness::CompleteWorkflow("1")})));
  REQUIRE(h.Complete(*wt2, {EngineHarness::CompleteWorkflow("2")}).ok());
  auto types = h.EventTypes(run);
  REQUIRE(types[3] == E::EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT);
  REQUIRE(types.back() == E::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
}

TEST_CASE("Events arriving during a workflow task are buffered behind its completion") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  REQUIRE(h.Complete(*h.PollWorkflowTask(),
                     {EngineHarness::ScheduleActivity("a", "t", absl::Seconds(10)),
                      EngineHarness::StartTimer("t", absl::Seconds(5))})
              .ok());
  auto activity = h.PollActivityTask();
  REQUIRE(CompleteActivity(h, *activity, "1").ok());
  auto wt = h.PollWorkflowTask();  // sees the completion
  // While that task runs, the timer fires: the event waits behind the task's completion.
  h.Advance(absl::Seconds(5));
  // Closing now would ignore the timer event: refused (the answer says so), and a new task
  // delivers it.
  api::RespondWorkflowTaskCompletedRequest close;
  close.set_task_token(wt->task_token());
  *close.add_commands() = EngineHarness::CompleteWorkflow("x");
  auto refused = h.engine().RespondWorkflowTaskCompleted(close);
  REQUIRE(refused.ok());
  REQUIRE(refused->rejected_cause() == api::WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND);
  REQUIRE(h.Describe(run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  auto wt2 = h.PollWorkflowTask();
  REQUIRE(h.Complete(*wt2, {EngineHarness::CompleteWorkflow("y")}).ok());
  auto types = h.EventTypes(run);
  auto failed = std::find(types.begin(), types.end(), E::EVENT_TYPE_WORKFLOW_TASK_FAILED);
  REQUIRE(failed != types.end());
  REQUIRE(*(failed + 1) == E::EVENT_TYPE_TIMER_FIRED);
  REQUIRE(types.back() == E::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  RequireGapless(h.History(run));
}

TEST_CASE("A marker records a failure only when its command has one") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  api::Command marker;
  marker.set_command_type(api::COMMAND_TYPE_RECORD_MARKER);
  marker.mutable_record_marker_command_attributes()->set_marker_name("local_activity");
  api::Command failed = marker;
  failed.mutable_record_marker_command_attributes()->mutable_failure()->set_message("boom");
  REQUIRE(h.Complete(*h.PollWorkflowTask(), {marker, failed}).ok());
  std::vector<api::MarkerRecordedEventAttributes> markers;
  const api::History history = h.History(run);
  for (const auto& event : history.events()) {
    if (event.has_marker_recorded_event_attributes()) {
      markers.push_back(event.marker_recorded_event_attributes());
    }
  }
  REQUIRE(markers.size() == 2);
  CHECK(!markers[0].has_failure());
  CHECK(markers[1].failure().message() == "boom");
}

TEST_CASE("Id reuse and conflict policies, and idempotent starts") {
  EngineHarness h;
  api::StartWorkflowExecutionRequest with_request;
  with_request.set_request_id("req-1");
  std::string run1 = h.Start("id", with_request).value();
  // The same request again: the same run.
  REQUIRE(h.Start("id", with_request).value() == run1);
  // Another start while it runs: refused by default.
  REQUIRE(absl::IsAlreadyExists(h.Start("id").status()));
  api::StartWorkflowExecutionRequest use_existing;
  use_existing.set_workflow_id_conflict_policy(api::WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING);
  REQUIRE(h.Start("id", use_existing).value() == run1);
  api::StartWorkflowExecutionRequest terminate;
  terminate.set_workflow_id_conflict_policy(api::WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING);
  std::string run2 = h.Start("id", terminate).value();
  REQUIRE(run2 != run1);
  REQUIRE(h.Describe(run1).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);

  // run2 completes successfully.
  auto wt = h.PollWorkflowTask();
  while (wt.has_value() && wt->workflow_execution().run_id() != run2) wt = h.PollWorkflowTask();
  REQUIRE(h.Complete(*wt, {EngineHarness::CompleteWorkflow("ok")}).ok());
  api::StartWorkflowExecutionRequest failed_only;
  failed_only.set_workflow_id_reuse_policy(
      api::WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY);
  REQUIRE(absl::IsAlreadyExists(h.Start("id", failed_only).status()));
  api::StartWorkflowExecutionRequest reject;
  reject.set_workflow_id_reuse_policy(api::WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE);
  REQUIRE(absl::IsAlreadyExists(h.Start("id", reject).status()));
  std::string run3 = h.Start("id").value();  // ALLOW_DUPLICATE

  // run3 is terminated: a failed-only reuse is allowed now.
  api::TerminateWorkflowExecutionRequest kill;
  kill.mutable_workflow_execution()->set_workflow_id("id");
  kill.set_reason("test");
  REQUIRE(h.engine().TerminateWorkflowExecution(kill).ok());
  REQUIRE(absl::IsFailedPrecondition(h.engine().TerminateWorkflowExecution(kill)));
  REQUIRE(h.Start("id", failed_only).ok());
  (void)run3;
}

TEST_CASE("A run timeout closes the run, late answers are refused") {
  EngineHarness h;
  api::StartWorkflowExecutionRequest request;
  ToProto(absl::Minutes(1), request.mutable_workflow_run_timeout());
  std::string run = h.Start("wf", request).value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(h.Complete(*wt, {EngineHarness::ScheduleActivity("a", "t", absl::Hours(1))}).ok());
  auto activity = h.PollActivityTask();
  h.Advance(absl::Minutes(1));
  REQUIRE(h.Describe(run).workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT);
  REQUIRE(absl::IsNotFound(CompleteActivity(h, *activity, "late")));
  REQUIRE(h.EventTypes(run).back() == E::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT);
}

TEST_CASE("Bad commands fail the workflow task with a cause and are not applied") {
  EngineHarness h;
  std::string run = h.Start("wf").value();
  auto wt = h.PollWorkflowTask();
  api::Command no_timeout = EngineHarness::ScheduleActivity("a", "t", absl::ZeroDuration());
  absl::Status status = h.Complete(*wt, {no_timeout});
  REQUIRE(absl::IsInvalidArgument(status));
  REQUIRE(std::string(status.message()).find("start_to_close_timeout") != std::string::npos);
  auto history = h.History(run);
  const auto& failed = history.events(3);
  REQUIRE(failed.event_type() == E::EVENT_TYPE_WORKFLOW_TASK_FAILED);
  REQUIRE(failed.workflow_task_failed_event_attributes().cause() ==
          api::WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES);
  REQUIRE(h.Describe(run).pending_activities_size() == 0);
  auto retry = h.PollWorkflowTask();
  REQUIRE(retry->attempt() == 2);
}

TEST_CASE("List filters by type and status, newest first, with paging") {
  EngineHarness h;
  for (int i = 0; i < 5; ++i) {
    api::StartWorkflowExecutionRequest request;
    request.mutable_workflow_type()->set_name(i % 2 == 0 ? "even" : "odd");
    REQUIRE(h.Start("w" + std::to_string(i), request).ok());
    h.Advance(absl::Seconds(1));
  }
  api::ListWorkflowExecutionsRequest list;
  list.set_page_size(2);
  auto page1 = h.engine().ListWorkflowExecutions(list).value();
  REQUIRE(page1.executions_size() == 2);
  REQUIRE(page1.executions(0).execution().workflow_id() == "w4");
  REQUIRE_FALSE(page1.next_page_token().empty());
  list.set_next_page_token(page1.next_page_token());
  auto page2 = h.engine().ListWorkflowExecutions(list).value();
  REQUIRE(page2.executions(0).execution().workflow_id() == "w2");
  api::ListWorkflowExecutionsRequest odd;
  odd.set_workflow_type("odd");
  REQUIRE(h.engine().ListWorkflowExecutions(odd).value().executions_size() == 2);
  api::ListWorkflowExecutionsRequest done;
  done.set_status(api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  REQUIRE(h.engine().ListWorkflowExecutions(done).value().executions_size() == 0);
}

TEST_CASE("Eager activities start in the completing transition and come back in its answer",
          "[eager]") {
  EngineHarness h;
  std::string run = h.Start("wf-eager").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  api::Command eager = EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10));
  eager.mutable_schedule_activity_task_command_attributes()->set_request_eager_execution(true);
  api::Command not_asked = EngineHarness::ScheduleActivity("a2", "greet", absl::Seconds(10));
  api::Command elsewhere = EngineHarness::ScheduleActivity("a3", "greet", absl::Seconds(10));
  elsewhere.mutable_schedule_activity_task_command_attributes()->set_request_eager_execution(true);
  elsewhere.mutable_schedule_activity_task_command_attributes()->mutable_task_queue()->set_name(
      "other");

  api::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token(wt->task_token());
  request.set_identity("eager-worker");
  *request.add_commands() = eager;
  *request.add_commands() = not_asked;
  *request.add_commands() = elsewhere;
  auto answer = h.engine().RespondWorkflowTaskCompleted(request);
  REQUIRE(answer.ok());
  // Only the activity that asked, on the workflow's own queue, is started and returned.
  REQUIRE(answer->activity_tasks_size() == 1);
  const api::PollActivityTaskQueueResponse& task = answer->activity_tasks(0);
  CHECK(task.activity_id() == "a1");
  CHECK(task.attempt() == 1);
  CHECK(task.input().payloads(0).data() == "\"in\"");
  // It has no backlog entry; the other two do.
  std::vector<QueuedTask> backlog = h.Backlog(keys::TaskKind::kActivity, "q");
  REQUIRE(backlog.size() == 1);
  CHECK(h.Backlog(keys::TaskKind::kActivity, "other").size() == 1);
  auto described = h.Describe(run);
  for (const auto& pending : described.pending_activities()) {
    CHECK(pending.state() == (pending.activity_id() == "a1"
                                  ? api::PENDING_ACTIVITY_STATE_STARTED
                                  : api::PENDING_ACTIVITY_STATE_SCHEDULED));
  }

  // The eager task completes like a polled one; its started event names the worker.
  REQUIRE(CompleteActivity(h, task, "done").ok());
  bool found = false;
  api::History history = h.History(run);
  for (const auto& event : history.events()) {
    if (event.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_STARTED &&
        event.activity_task_started_event_attributes().identity() == "eager-worker") {
      found = true;
    }
  }
  CHECK(found);
  RequireGapless(history);
}

TEST_CASE("An eager start answers with the first workflow task, started in the same transition",
          "[eager]") {
  EngineHarness h;
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id("wf-eager-start");
  request.mutable_workflow_type()->set_name("t");
  request.mutable_task_queue()->set_name("q");
  request.set_identity("starter-worker");
  request.set_request_id("req-1");
  request.set_request_eager_execution(true);
  auto started = h.engine().StartWorkflowExecution(request);
  REQUIRE(started.ok());
  REQUIRE(started->has_eager_workflow_task());
  const api::PollWorkflowTaskQueueResponse& task = started->eager_workflow_task();
  REQUIRE(task.history().events_size() == 3);
  CHECK(task.history().events(2).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
  CHECK(task.history().events(2).workflow_task_started_event_attributes().identity() ==
        "starter-worker");
  CHECK(task.history().events(0).task_id() == task.history().events(2).task_id());
  CHECK(h.Backlog(keys::TaskKind::kWorkflow, "q").empty());
  // It completes like a polled task.
  REQUIRE(h.Complete(task, {EngineHarness::CompleteWorkflow("done")}).ok());
  CHECK(h.Describe(started->run_id()).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);

  // A retried start gets the run, not a second task.
  auto again = h.engine().StartWorkflowExecution(request);
  REQUIRE(again.ok());
  CHECK(again->run_id() == started->run_id());
  CHECK_FALSE(again->has_eager_workflow_task());
}

// An eager start of workflow `id` whose first task the caller ran ahead on `run_id` at
// `started`, answering with `commands`.
api::StartWorkflowExecutionRequest SpeculativeStart(const std::string& id,
                                                    const std::string& run_id, absl::Time started,
                                                    std::vector<api::Command> commands) {
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id(id);
  request.mutable_workflow_type()->set_name("t");
  request.mutable_task_queue()->set_name("q");
  request.set_identity("starter-worker");
  request.set_request_id("req-" + id);
  request.set_request_eager_execution(true);
  auto* speculative = request.mutable_speculative_first_task();
  speculative->set_run_id(run_id);
  speculative->set_next_event_id(1);
  ToProto(started, speculative->mutable_started_time());
  speculative->mutable_completion()->set_identity("starter-worker");
  speculative->mutable_completion()->set_return_new_events(true);
  for (api::Command& command : commands) {
    *speculative->mutable_completion()->add_commands() = std::move(command);
  }
  return request;
}

constexpr char kRunId[] = "0b9a4a37-5d0c-4c7e-9d3e-2f1a6b8c9d01";

TEST_CASE("A start whose first task the caller ran ahead records both in one transition",
          "[speculative]") {
  EngineHarness h;
  const absl::Time ran_at = h.clock().Now() - absl::Milliseconds(3);
  api::Command activity = EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10));
  activity.mutable_schedule_activity_task_command_attributes()->set_request_eager_execution(true);
  auto started =
      h.engine().StartWorkflowExecution(SpeculativeStart("wf-ahead", kRunId, ran_at, {activity}));
  REQUIRE(started.ok());
  CHECK(started->run_id() == kRunId);
  CHECK(started->started());
  REQUIRE(started->has_first_task_completed());
  CHECK_FALSE(started->has_eager_workflow_task());
  const api::RespondWorkflowTaskCompletedResponse& completed = started->first_task_completed();
  REQUIRE(completed.activity_tasks_size() == 1);
  REQUIRE(completed.new_events_size() == 2);  // completed, activity scheduled
  CHECK(completed.new_events(0).event_id() == 4);

  api::History history = h.History(kRunId);
  RequireGapless(history);
  REQUIRE(history.events_size() == 5);
  for (const auto& event : history.events()) {
    CHECK(FromProto(event.event_time()) == ran_at);  // the caller's time: its Now()
    CHECK(event.task_id() == history.events(0).task_id());
  }
  CHECK(history.events(2).workflow_task_started_event_attributes().identity() == "starter-worker");
  CHECK(h.Backlog(keys::TaskKind::kWorkflow, "q").empty());
  // The workflow id's current run is it.
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_workflow_id("wf-ahead");
  auto described = h.engine().DescribeWorkflowExecution(describe);
  REQUIRE(described.ok());
  CHECK(described->workflow_execution_info().execution().run_id() == kRunId);
  // The activity then completes as usual.
  REQUIRE(CompleteActivity(h, completed.activity_tasks(0), "x").ok());

  // A retried start gets the run, nothing more.
  auto again =
      h.engine().StartWorkflowExecution(SpeculativeStart("wf-ahead", kRunId, ran_at, {activity}));
  REQUIRE(again.ok());
  CHECK(again->run_id() == kRunId);
  CHECK_FALSE(again->started());
  CHECK_FALSE(again->has_first_task_completed());
  CHECK(h.History(kRunId).events_size() == 8);  // + activity started and completed, a task
}

TEST_CASE("A start whose first task does not fit is done as without it", "[speculative]") {
  EngineHarness h;
  std::string run_id = kRunId;
  absl::Time ran_at = h.clock().Now();
  std::vector<api::Command> commands = {EngineHarness::CompleteWorkflow("\"done\"")};
  SECTION("a run id that is not a UUID") { run_id = "my-own-run"; }
  SECTION("a run id already taken") {
    REQUIRE(h.engine()
                .StartWorkflowExecution(SpeculativeStart("other", kRunId, ran_at, commands))
                ->has_first_task_completed());
  }
  SECTION("a time ahead of the engine's clock by more than the skew allowed") {
    ran_at = h.clock().Now() + absl::Seconds(2);
  }
  SECTION("a time older than the task's timeout") { ran_at = h.clock().Now() - absl::Seconds(11); }
  SECTION("a bad command") {
    commands = {EngineHarness::ScheduleActivity("", "greet", absl::Seconds(10))};
  }
  auto started =
      h.engine().StartWorkflowExecution(SpeculativeStart("wf-fallback", run_id, ran_at, commands));
  REQUIRE(started.ok());
  CHECK(started->started());
  CHECK_FALSE(started->has_first_task_completed());
  CHECK(started->run_id() != kRunId);
  CHECK(started->run_id() != run_id);
  // The first task comes back to be run, as for any eager start.
  REQUIRE(started->has_eager_workflow_task());
  CHECK(started->eager_workflow_task().started_event_id() == 3);
  CHECK(h.History(started->run_id()).events_size() == 3);
}

// Starts workflow `id` on queue "q" and runs it to its first activity (scheduled by the first
// workflow task, then polled); returns the run id and the activity task.
std::pair<std::string, api::PollActivityTaskQueueResponse> RunToFirstActivity(
    EngineHarness& h, const std::string& id, absl::Duration start_to_close = absl::Seconds(10)) {
  std::string run = h.Start(id).value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  REQUIRE(h.Complete(*wt, {EngineHarness::ScheduleActivity("a1", "greet", start_to_close)}).ok());
  auto activity = h.PollActivityTask();
  REQUIRE(activity.has_value());
  return {run, *activity};
}

// Completes `activity` asking for the workflow's next task, for "workflow-worker".
absl::StatusOr<api::RespondActivityTaskCompletedResponse> CompleteReturningNext(
    EngineHarness& h, const api::PollActivityTaskQueueResponse& activity, bool partial_history) {
  api::RespondActivityTaskCompletedRequest done;
  done.set_task_token(activity.task_token());
  *done.mutable_result() = Text("ok");
  done.set_identity("activity-worker");
  done.set_return_new_workflow_task(true);
  done.set_workflow_task_identity("workflow-worker");
  done.set_workflow_task_partial_history(partial_history);
  return h.engine().RespondActivityTaskCompleted(done);
}

TEST_CASE("A workflow task heartbeat records its completion and hands its worker a new task") {
  EngineHarness h;
  std::string run = h.Start("wf-heartbeat").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  api::RespondWorkflowTaskCompletedRequest heartbeat;
  heartbeat.set_task_token(wt->task_token());
  heartbeat.set_identity("ts-worker");
  heartbeat.set_sticky_worker("ts-worker-sticky");
  heartbeat.set_force_create_new_workflow_task(true);
  heartbeat.set_return_new_workflow_task(true);
  auto answer = h.engine().RespondWorkflowTaskCompleted(heartbeat);
  REQUIRE(answer.ok());
  // Completed, then a new task scheduled and started for the worker that sent the heartbeat.
  using E = api::EventType;
  CHECK(h.EventTypes(run) ==
        std::vector<E>{E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                       E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, E::EVENT_TYPE_WORKFLOW_TASK_STARTED,
                       E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED, E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                       E::EVENT_TYPE_WORKFLOW_TASK_STARTED});
  REQUIRE(answer->has_workflow_task());
  const api::PollWorkflowTaskQueueResponse& next = answer->workflow_task();
  CHECK(next.started_event_id() == 6);
  CHECK(next.previous_started_event_id() == 3);
  // The worker keeps the run (sticky): the events after the task it completed.
  REQUIRE(next.history().events_size() == 3);
  CHECK(next.history().events(0).event_id() == 4);
  // Nobody else can take the task; its token completes it.
  CHECK_FALSE(h.PollWorkflowTask().has_value());
  REQUIRE(h.Complete(next, {EngineHarness::CompleteWorkflow("\"done\"")}).ok());
  CHECK(h.Describe(run).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);

  // Without return_new_workflow_task the new task waits for a poll.
  std::string polled = h.Start("wf-heartbeat-polled").value();
  wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  heartbeat.set_task_token(wt->task_token());
  heartbeat.set_return_new_workflow_task(false);
  answer = h.engine().RespondWorkflowTaskCompleted(heartbeat);
  REQUIRE(answer.ok());
  CHECK_FALSE(answer->has_workflow_task());
  auto next_polled = h.PollWorkflowTask();
  REQUIRE(next_polled.has_value());
  CHECK(next_polled->workflow_execution().run_id() == polled);
  CHECK(next_polled->started_event_id() == 6);
}

TEST_CASE("A sticky worker's poll gets only the new events, any other poller gets them all") {
  // Both workers share an identity: only the instance id tells them apart.
  for (const bool sticky : {true, false}) {
    for (const std::string poller : {"instance-1", "instance-2"}) {
      EngineHarness h;
      std::string run = h.Start("wf-sticky").value();
      auto wt = h.PollWorkflowTask();  // as "worker-1"
      REQUIRE(wt.has_value());
      api::RespondWorkflowTaskCompletedRequest completed;
      completed.set_task_token(wt->task_token());
      completed.set_identity("kiln-worker");
      if (sticky) completed.set_sticky_worker("instance-1");
      *completed.add_commands() = EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10));
      REQUIRE(h.engine().RespondWorkflowTaskCompleted(completed).ok());
      auto activity = h.PollActivityTask();
      REQUIRE(activity.has_value());
      REQUIRE(CompleteActivity(h, *activity, "hi").ok());

      std::vector<QueuedTask> backlog = h.Backlog(keys::TaskKind::kWorkflow, "q");
      REQUIRE(backlog.size() == 1);
      auto next = h.engine().RecordWorkflowTaskStarted(backlog[0], "kiln-worker", "poll-2",
                                                       std::nullopt, poller);
      REQUIRE(next.ok());
      const api::History& history = next->history();
      REQUIRE(history.events_size() > 0);
      CHECK(history.events(history.events_size() - 1).event_id() == next->started_event_id());
      if (sticky && poller == "instance-1") {
        // The task completed, the activity scheduled, started and completed, then the new
        // task scheduled and started.
        CHECK(history.events(0).event_id() == next->previous_started_event_id() + 1);
        CHECK(history.events(0).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
        CHECK(history.events_size() == 6);
      } else {
        CHECK(history.events(0).event_id() == 1);
        RequireGapless(history);
      }
    }
  }
}

TEST_CASE("A completed activity can bring back the workflow's next task, already started",
          "[eager]") {
  EngineHarness h;
  auto [run, activity] = RunToFirstActivity(h, "wf-next");
  auto answer = CompleteReturningNext(h, activity, /*partial_history=*/false);
  REQUIRE(answer.ok());
  REQUIRE(answer->has_workflow_task());
  const api::History& history = answer->workflow_task().history();
  const api::HistoryEvent& started = history.events(history.events_size() - 1);
  CHECK(started.event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
  CHECK(started.workflow_task_started_event_attributes().identity() == "workflow-worker");
  CHECK(started.task_id() == history.events(history.events_size() - 3).task_id());
  CHECK(h.Backlog(keys::TaskKind::kWorkflow, "q").empty());

  // The completion that closes the run answers with the close event, as recorded.
  api::RespondWorkflowTaskCompletedRequest close;
  close.set_task_token(answer->workflow_task().task_token());
  close.set_identity("workflow-worker");
  *close.add_commands() = EngineHarness::CompleteWorkflow("\"done\"");
  auto closed = h.engine().RespondWorkflowTaskCompleted(close);
  REQUIRE(closed.ok());
  CHECK(h.Describe(run).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  REQUIRE(closed->has_closed_event());
  api::History recorded = h.History(run);
  const api::HistoryEvent& last = recorded.events(recorded.events_size() - 1);
  CHECK(last.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  CHECK(closed->closed_event().SerializeAsString() == last.SerializeAsString());
}

TEST_CASE("A worker holding the run gets the next task with only the events after its last",
          "[eager]") {
  EngineHarness h;
  auto [run, activity] = RunToFirstActivity(h, "wf-partial");
  auto answer = CompleteReturningNext(h, activity, /*partial_history=*/true);
  REQUIRE(answer.ok());
  REQUIRE(answer->has_workflow_task());
  const api::PollWorkflowTaskQueueResponse& next = answer->workflow_task();
  REQUIRE(next.previous_started_event_id() == 3);
  const api::History& partial = next.history();
  // WorkflowTaskCompleted (4) through the new task's WorkflowTaskStarted, as recorded.
  REQUIRE(partial.events_size() == next.started_event_id() - 3);
  CHECK(partial.events(0).event_id() == 4);
  CHECK(partial.events(partial.events_size() - 1).event_id() == next.started_event_id());
  CHECK(next.next_page_token().empty());
  api::History whole = h.History(run);
  for (const api::HistoryEvent& event : partial.events()) {
    CHECK(event.SerializeAsString() == whole.events(event.event_id() - 1).SerializeAsString());
  }
}

TEST_CASE("The next task's partial history comes from the run cache, not the store", "[eager]") {
  EngineHarness h;
  auto [run, activity] = RunToFirstActivity(h, "wf-cached");
  // Take events 4..6 out of the store behind the engine's back: only the cache has them now.
  WriteBatch take;
  for (int64_t id = 4; id <= 6; ++id) take.Delete(Table::kHistory, keys::HistoryEvent(run, id));
  REQUIRE(h.store().Commit(take).ok());
  auto answer = CompleteReturningNext(h, activity, /*partial_history=*/true);
  REQUIRE(answer.ok());
  const api::History& partial = answer->workflow_task().history();
  REQUIRE(partial.events_size() == 6);
  CHECK(partial.events(0).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
  CHECK(partial.events(1).event_type() == api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
  CHECK(partial.events(5).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
}

// Completes `activity` with a speculative workflow task: the worker assumed the run's next
// event id is `next_event_id` and ran the task at `started`, answering with `commands`.
absl::StatusOr<api::RespondActivityTaskCompletedResponse> CompleteSpeculating(
    EngineHarness& h, const api::PollActivityTaskQueueResponse& activity, int64_t next_event_id,
    absl::Time started, std::vector<api::Command> commands) {
  api::RespondActivityTaskCompletedRequest done;
  done.set_task_token(activity.task_token());
  *done.mutable_result() = Text("ok");
  done.set_identity("activity-worker");
  done.set_return_new_workflow_task(true);
  done.set_workflow_task_identity("workflow-worker");
  auto* speculative = done.mutable_speculative_workflow_task();
  speculative->set_next_event_id(next_event_id);
  ToProto(started, speculative->mutable_started_time());
  auto* completion = speculative->mutable_completion();
  completion->set_identity("workflow-worker");
  completion->set_return_new_events(true);
  for (api::Command& command : commands) *completion->add_commands() = std::move(command);
  return h.engine().RespondActivityTaskCompleted(done);
}

TEST_CASE("A completion answers with the events it recorded when asked", "[speculative]") {
  EngineHarness h;
  std::string run = h.Start("wf-events").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  api::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token(wt->task_token());
  request.set_identity("workflow-worker");
  request.set_return_new_events(true);
  *request.add_commands() = EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10));
  *request.add_commands() = EngineHarness::StartTimer("t1", absl::Seconds(30));
  auto answer = h.engine().RespondWorkflowTaskCompleted(request);
  REQUIRE(answer.ok());
  api::History whole = h.History(run);
  REQUIRE(whole.events_size() == 6);
  REQUIRE(answer->new_events_size() == 3);  // completed, activity scheduled, timer started
  for (int i = 0; i < 3; ++i) {
    CHECK(answer->new_events(i).SerializeAsString() == whole.events(3 + i).SerializeAsString());
  }
  // Not asked: none.
  request.set_return_new_events(false);
  auto activity = h.PollActivityTask();
  REQUIRE(CompleteActivity(h, *activity, "x").ok());
  auto wt2 = h.PollWorkflowTask();
  request.set_task_token(wt2->task_token());
  request.clear_commands();
  auto quiet = h.engine().RespondWorkflowTaskCompleted(request);
  REQUIRE(quiet.ok());
  CHECK(quiet->new_events_size() == 0);
}

TEST_CASE("A speculative workflow task completes in the transition of the activity that starts it",
          "[speculative]") {
  EngineHarness h;
  auto [run, activity] = RunToFirstActivity(h, "wf-speculative");
  const absl::Time activity_started = FromProto(activity.started_time());
  h.clock().Advance(absl::Seconds(2));
  const absl::Time ran_at = activity_started + absl::Seconds(1);  // the worker's clock
  api::Command next = EngineHarness::ScheduleActivity("a2", "greet", absl::Minutes(1));
  next.mutable_schedule_activity_task_command_attributes()->set_request_eager_execution(true);
  // Events 1-5: started, task scheduled/started/completed, a1 scheduled.
  auto answer = CompleteSpeculating(h, activity, 6, ran_at, {next});
  REQUIRE(answer.ok());
  REQUIRE(answer->has_workflow_task_completed());
  CHECK_FALSE(answer->has_workflow_task());
  const api::RespondWorkflowTaskCompletedResponse& completed = answer->workflow_task_completed();
  REQUIRE(completed.activity_tasks_size() == 1);  // a2, started eagerly in the same transition
  CHECK(completed.activity_tasks(0).activity_id() == "a2");

  // The history is what an activity completion, a polled task and its completion record.
  api::History history = h.History(run);
  RequireGapless(history);
  std::vector<E> types;
  for (const auto& event : history.events()) types.push_back(event.event_type());
  CHECK(types == std::vector<E>{
                     E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                     E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, E::EVENT_TYPE_WORKFLOW_TASK_STARTED,
                     E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED, E::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                     E::EVENT_TYPE_ACTIVITY_TASK_STARTED, E::EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                     E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, E::EVENT_TYPE_WORKFLOW_TASK_STARTED,
                     E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED, E::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED});
  // Recorded at the worker's time: a replay sees the Now() the worker's code saw.
  CHECK(FromProto(history.events(5).event_time()) == activity_started);
  for (int i = 6; i < history.events_size(); ++i) {
    CHECK(FromProto(history.events(i).event_time()) == ran_at);
  }
  CHECK(history.events(8).workflow_task_started_event_attributes().identity() == "workflow-worker");
  CHECK(history.events(9).workflow_task_completed_event_attributes().started_event_id() == 9);
  // The answer carries the events from the task's completion on, for the worker's cache.
  REQUIRE(completed.new_events_size() == 2);
  CHECK(completed.new_events(0).event_id() == 10);
  CHECK(completed.new_events(1).SerializeAsString() == history.events(10).SerializeAsString());
  // No workflow task left pending or queued, no timer of it left behind.
  auto described = h.Describe(run);
  CHECK_FALSE(described.has_pending_workflow_task());
  CHECK(h.Backlog(keys::TaskKind::kWorkflow, "q").empty());
  h.Advance(absl::Seconds(15));  // past the task's timeout: nothing fires into the run
  CHECK(h.History(run).events_size() == 11);

  // The next one closes the run: its close event comes back, as recorded.
  auto closed = CompleteSpeculating(h, completed.activity_tasks(0), 12,
                                    h.clock().Now() - absl::Milliseconds(1),
                                    {EngineHarness::CompleteWorkflow("\"done\"")});
  REQUIRE(closed.ok());
  REQUIRE(closed->has_workflow_task_completed());
  CHECK(h.Describe(run).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  api::History final_history = h.History(run);
  RequireGapless(final_history);
  CHECK(closed->workflow_task_completed().closed_event().SerializeAsString() ==
        final_history.events(final_history.events_size() - 1).SerializeAsString());
}

TEST_CASE("A speculative workflow task that does not fit is refused, the completion is recorded",
          "[speculative]") {
  EngineHarness h;
  auto [run, activity] = RunToFirstActivity(h, "wf-refused", absl::Minutes(1));
  const absl::Time activity_started = FromProto(activity.started_time());
  h.clock().Advance(absl::Seconds(2));
  int64_t next_event_id = 6;
  absl::Time ran_at = activity_started + absl::Seconds(1);
  std::vector<api::Command> commands = {EngineHarness::CompleteWorkflow("\"done\"")};
  bool task_back = true;  // the next task, started for the worker as without speculation
  SECTION("the run moved on: a signal came after the worker's state") {
    task_back = false;
    api::SignalWorkflowExecutionRequest signal;
    signal.mutable_workflow_execution()->set_workflow_id("wf-refused");
    signal.set_signal_name("go");
    REQUIRE(h.engine().SignalWorkflowExecution(signal).ok());
    // Its task is scheduled: the completion adds no task of its own.
    REQUIRE(h.PollWorkflowTask().has_value());
  }
  SECTION("the worker's state is behind") { next_event_id = 5; }
  SECTION("its time is before the activity started") {
    ran_at = activity_started - absl::Milliseconds(1);
  }
  SECTION("its time is ahead of the engine's clock by more than the skew allowed") {
    ran_at = h.clock().Now() + absl::Seconds(2);
  }
  SECTION("its time is older than the task's timeout") {
    h.clock().Advance(absl::Seconds(20));
    h.Advance(absl::ZeroDuration());
  }
  SECTION("a command is bad: the task comes back to be run (and failed) the usual way") {
    commands = {EngineHarness::ScheduleActivity("", "greet", absl::Seconds(10))};
  }
  auto answer = CompleteSpeculating(h, activity, next_event_id, ran_at, commands);
  REQUIRE(answer.ok());
  CHECK_FALSE(answer->has_workflow_task_completed());
  CHECK(answer->has_workflow_task() == task_back);
  // The activity's completion is recorded (buffered behind the signal's task, if that runs).
  CHECK(h.Describe(run).pending_activities_size() == 0);
  auto types = h.EventTypes(run);
  CHECK(std::count(types.begin(), types.end(), E::EVENT_TYPE_WORKFLOW_TASK_FAILED) == 0);
  CHECK(std::count(types.begin(), types.end(), E::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) == 0);
  CHECK(h.Describe(run).workflow_execution_info().status() ==
        api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  RequireGapless(h.History(run));
}

TEST_CASE("A completion that leaves the run open answers without a close event", "[eager]") {
  EngineHarness h;
  h.Start("wf-open").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  api::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token(wt->task_token());
  request.set_identity("workflow-worker");
  *request.add_commands() = EngineHarness::ScheduleActivity("a1", "greet", absl::Seconds(10));
  auto answer = h.engine().RespondWorkflowTaskCompleted(request);
  REQUIRE(answer.ok());
  CHECK_FALSE(answer->has_closed_event());
}

TEST_CASE("Transfer tasks are told from timers by type, whatever the enum order") {
  for (internal::TimerTaskType type :
       {internal::TIMER_TASK_TYPE_START_CHILD, internal::TIMER_TASK_TYPE_CHILD_CLOSED,
        internal::TIMER_TASK_TYPE_PARENT_CLOSE_POLICY, internal::TIMER_TASK_TYPE_SIGNAL_EXTERNAL,
        internal::TIMER_TASK_TYPE_CANCEL_EXTERNAL}) {
    CHECK(IsTransferTask(type));
    CHECK(TimerTable(type) == Table::kTimers);
  }
  for (internal::TimerTaskType type :
       {internal::TIMER_TASK_TYPE_UNSPECIFIED, internal::TIMER_TASK_TYPE_USER_TIMER,
        internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT, internal::TIMER_TASK_TYPE_ACTIVITY_RETRY,
        internal::TIMER_TASK_TYPE_WORKFLOW_TASK_TIMEOUT,
        internal::TIMER_TASK_TYPE_WORKFLOW_RUN_TIMEOUT, internal::TIMER_TASK_TYPE_DELETE_HISTORY}) {
    CHECK_FALSE(IsTransferTask(type));
  }
  // A type from a newer version is not taken for a transfer just because its number is high.
  CHECK_FALSE(IsTransferTask(static_cast<internal::TimerTaskType>(100)));
}

}  // namespace
}  // namespace kiln::orchestrator

namespace kiln::orchestrator {
namespace {

absl::Status FailTask(EngineHarness& h, const api::PollWorkflowTaskQueueResponse& task) {
  api::RespondWorkflowTaskFailedRequest failed;
  failed.set_task_token(task.task_token());
  failed.set_cause(api::WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE);
  failed.mutable_failure()->set_message("unknown workflow type");
  return h.engine().RespondWorkflowTaskFailed(failed);
}

TEST_CASE("A workflow task that keeps failing is retried at once then after a growing backoff") {
  EngineHarness h;
  const std::string run = h.Start("failing").value();
  // Attempts 1 and 2 are dispatched at once.
  auto task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  REQUIRE(FailTask(h, *task).ok());
  task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  CHECK(task->attempt() == 2);
  REQUIRE(FailTask(h, *task).ok());
  // Attempt 3 waits 1 s, attempt 4 waits 2 s: no task before, one after.
  for (const absl::Duration backoff : {absl::Seconds(1), absl::Seconds(2)}) {
    INFO(backoff);
    CHECK_FALSE(h.PollWorkflowTask().has_value());
    CHECK(h.Describe(run).pending_workflow_task().scheduled_event_id() != 0);
    h.Advance(backoff - absl::Milliseconds(1));
    CHECK_FALSE(h.PollWorkflowTask().has_value());
    h.Advance(absl::Milliseconds(1));
    task = h.PollWorkflowTask();
    REQUIRE(task.has_value());
    REQUIRE(FailTask(h, *task).ok());
  }
  // The backoff doubles up to its ceiling.
  CHECK(limits::WorkflowTaskRetryBackoff(2) == absl::ZeroDuration());
  CHECK(limits::WorkflowTaskRetryBackoff(5) == absl::Seconds(4));
  CHECK(limits::WorkflowTaskRetryBackoff(100) == limits::kWorkflowTaskRetryMaxBackoff);

  // A task waiting out its backoff when the run is terminated never comes.
  api::TerminateWorkflowExecutionRequest terminate;
  terminate.mutable_workflow_execution()->set_workflow_id("failing");
  REQUIRE(h.engine().TerminateWorkflowExecution(terminate).ok());
  h.Advance(absl::Minutes(20));
  CHECK_FALSE(h.PollWorkflowTask().has_value());
}

std::vector<api::EventType> TypesOf(const api::History& history) {
  std::vector<api::EventType> types;
  for (const api::HistoryEvent& event : history.events()) types.push_back(event.event_type());
  return types;
}

TEST_CASE("A run with transient workflow task retries writes a retry only when it completes") {
  using E = api::EventType;
  EngineHarness h;
  api::StartWorkflowExecutionRequest start;
  start.set_transient_workflow_task_retries(true);
  const std::string run = h.Start("transient", start).value();
  auto task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  REQUIRE(FailTask(h, *task).ok());  // the first failure is written
  const std::vector<E> first_failure{
      E::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
      E::EVENT_TYPE_WORKFLOW_TASK_STARTED, E::EVENT_TYPE_WORKFLOW_TASK_FAILED};
  CHECK(h.EventTypes(run) == first_failure);

  // Attempt 2: not written; its worker gets the history and the task's own two events.
  task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  CHECK(task->attempt() == 2);
  CHECK(task->started_event_id() == 6);
  CHECK(h.EventTypes(run) == first_failure);
  REQUIRE(task->history().events_size() == 6);
  const api::HistoryEvent& scheduled = task->history().events(4);
  CHECK(scheduled.event_id() == 5);
  CHECK(scheduled.event_type() == E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
  CHECK(scheduled.workflow_task_scheduled_event_attributes().attempt() == 2);
  CHECK(task->history().events(5).event_id() == 6);
  CHECK(task->history().events(5).workflow_task_started_event_attributes().scheduled_event_id() ==
        5);
  // A history read from the task's page token (as a worker reads the rest of a long history)
  // ends with the same two events.
  api::GetWorkflowExecutionHistoryRequest read;
  read.mutable_execution()->set_run_id(run);
  read.set_next_page_token(HistoryPageToken(3, task->started_event_id()));
  read.set_maximum_page_size(1);
  auto page = h.engine().ReadHistory(read);
  REQUIRE(page.ok());
  CHECK(page->response.history().events_size() == 1);
  REQUIRE(!page->response.next_page_token().empty());
  read.set_next_page_token(page->response.next_page_token());
  page = h.engine().ReadHistory(read);
  REQUIRE(page.ok());
  CHECK(page->response.next_page_token().empty());
  REQUIRE(page->response.history().events_size() == 3);  // WorkflowTaskFailed, then the task's
  CHECK(page->response.history().events(2).SerializeAsString() ==
        task->history().events(5).SerializeAsString());

  // Its failure, attempt 3's timeout: nothing written.
  REQUIRE(FailTask(h, *task).ok());
  h.Advance(absl::Seconds(1));  // attempt 3's backoff
  task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  CHECK(task->attempt() == 3);
  CHECK(task->started_event_id() == 6);
  h.Advance(absl::Seconds(10));  // the workflow task timeout
  CHECK(h.EventTypes(run) == first_failure);

  // A signal while attempt 4 waits out its backoff is written, so the retry is written when it
  // starts, as a first attempt after the signal.
  api::SignalWorkflowExecutionRequest signal;
  signal.mutable_workflow_execution()->set_workflow_id("transient");
  signal.set_signal_name("go");
  REQUIRE(h.engine().SignalWorkflowExecution(signal).ok());
  h.Advance(absl::Seconds(2));
  task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  CHECK(task->attempt() == 1);
  CHECK(task->started_event_id() == 7);
  std::vector<E> written = first_failure;
  for (E e : {E::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, E::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
              E::EVENT_TYPE_WORKFLOW_TASK_STARTED}) {
    written.push_back(e);
  }
  CHECK(h.EventTypes(run) == written);
  CHECK(TypesOf(task->history()) == written);

  // It fails (written, as a first attempt's failure); attempt 2 completes: its events are
  // written with the ids and times its worker saw.
  REQUIRE(FailTask(h, *task).ok());
  written.push_back(E::EVENT_TYPE_WORKFLOW_TASK_FAILED);
  task = h.PollWorkflowTask();
  REQUIRE(task.has_value());
  CHECK(task->attempt() == 2);
  CHECK(h.EventTypes(run) == written);
  REQUIRE(h.Complete(*task, {EngineHarness::CompleteWorkflow("\"done\"")}).ok());
  api::History history = h.History(run);
  REQUIRE(history.events_size() == 12);
  // The same but for the engine's ordering id of the transition that wrote them.
  history.mutable_events(8)->clear_task_id();
  history.mutable_events(9)->clear_task_id();
  CHECK(history.events(8).SerializeAsString() ==
        task->history().events(8).SerializeAsString());  // WorkflowTaskScheduled, attempt 2
  CHECK(history.events(9).SerializeAsString() ==
        task->history().events(9).SerializeAsString());  // WorkflowTaskStarted
  CHECK(history.events(10).event_type() == E::EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
  CHECK(history.events(10).workflow_task_completed_event_attributes().started_event_id() == 10);
  CHECK(history.events(11).event_type() == E::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
}

TEST_CASE("An SDK's metadata on a completion is recorded on its WorkflowTaskCompleted event") {
  EngineHarness h;
  std::string run = h.Start("wf-sdk-metadata").value();
  auto wt = h.PollWorkflowTask();
  REQUIRE(wt.has_value());
  api::RespondWorkflowTaskCompletedRequest request;
  request.set_task_token(wt->task_token());
  *request.add_commands() = EngineHarness::CompleteWorkflow("done");
  request.mutable_sdk_metadata()->add_core_used_flags(1);
  request.mutable_sdk_metadata()->add_core_used_flags(2);
  request.mutable_sdk_metadata()->add_lang_used_flags(3);
  request.mutable_sdk_metadata()->set_sdk_name("temporal-typescript");
  request.mutable_sdk_metadata()->set_sdk_version("1.24.0");
  REQUIRE(h.engine().RespondWorkflowTaskCompleted(request).ok());

  bool found = false;
  api::History history = h.History(run);
  for (const auto& event : history.events()) {
    if (event.event_type() != api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED) continue;
    found = true;
    const auto& metadata = event.workflow_task_completed_event_attributes().sdk_metadata();
    CHECK(metadata.core_used_flags_size() == 2);
    CHECK(metadata.lang_used_flags(0) == 3);
    CHECK(metadata.sdk_name() == "temporal-typescript");
    CHECK(metadata.sdk_version() == "1.24.0");
  }
  CHECK(found);
}

}  // namespace
}  // namespace kiln::orchestrator
