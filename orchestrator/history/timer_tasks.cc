// HistoryEngine: the timer table's dispatch (FireTimer) and the run's own timers, one function
// each: user timers, activity timeouts and retries, workflow task and run timeouts. A timer
// that no longer matches the run's state is stale: its key is deleted and nothing else
// changes. Transfers are in transfers.cc, retention in retention.cc.
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/history_engine.h"

namespace kiln::orchestrator {
namespace {

api::Failure TimeoutFailure(api::TimeoutType type, const api::Payloads& details) {
  api::Failure failure;
  failure.set_message(absl::StrCat("activity ", api::TimeoutType_Name(type)));
  failure.set_source("kiln-history");
  auto* info = failure.mutable_timeout_failure_info();
  info->set_timeout_type(type);
  *info->mutable_last_heartbeat_details() = details;
  return failure;
}

}  // namespace

absl::Status HistoryEngine::FireTimer(const std::string& key, const internal::TimerTask& task) {
  // The timer table also carries transfers (due now) and, from before deletions had a table of
  // their own, retention deletions: each goes to its own file.
  if (IsTransferTask(task.type())) return FireTransfer(key, task);
  if (task.type() == internal::TIMER_TASK_TYPE_DELETE_HISTORY) {
    return DeleteRun(Table::kTimers, key, task);
  }
  auto drop = [&]() {
    WriteBatch batch;
    batch.Delete(Table::kTimers, key);
    return store_->Commit(batch);
  };
  auto loaded = LoadRun(task.run_id());
  if (absl::IsNotFound(loaded.status())) return drop();
  if (!loaded.ok()) return loaded.status();
  auto handle = std::move(*loaded);
  const internal::ExecutionState& state = *(*handle)->state;
  if (state.status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING) return drop();

  Mutation m(state, clock_->Now(), task_ids_.get());
  m.Delete(Table::kTimers, key);
  bool stale = false;
  switch (task.type()) {
    case internal::TIMER_TASK_TYPE_USER_TIMER:
      RETURN_IF_ERROR(FireUserTimer(m, task, &stale));
      break;
    case internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT:
      RETURN_IF_ERROR(FireActivityTimeout(m, task, &stale));
      break;
    case internal::TIMER_TASK_TYPE_ACTIVITY_RETRY:
      RETURN_IF_ERROR(FireActivityRetry(m, task, &stale));
      break;
    case internal::TIMER_TASK_TYPE_WORKFLOW_TASK_TIMEOUT:
      RETURN_IF_ERROR(FireWorkflowTaskTimeout(m, task, &stale));
      break;
    case internal::TIMER_TASK_TYPE_WORKFLOW_TASK_RETRY:
      RETURN_IF_ERROR(FireWorkflowTaskRetry(m, task, &stale));
      break;
    case internal::TIMER_TASK_TYPE_WORKFLOW_RUN_TIMEOUT:
      RETURN_IF_ERROR(FireRunTimeout(m));
      break;
    default:
      stale = true;
  }
  if (stale) return drop();
  // Nothing of the run is read after: the commit may be held for the next task's answer.
  return Commit(*handle, m, nullptr, nullptr, /*may_hold=*/true);
}

absl::Status HistoryEngine::FireUserTimer(Mutation& m, const internal::TimerTask& task,
                                          bool* stale) {
  auto it = m.state().mutable_timers()->find(task.timer_id());
  if (it == m.state().mutable_timers()->end() || it->second.started_event_id() != task.event_id()) {
    *stale = true;
    return absl::OkStatus();
  }
  m.state().mutable_timers()->erase(it);
  ASSIGN_OR_RETURN(api::HistoryEvent * fired, m.AddWorkflowEvent(api::EVENT_TYPE_TIMER_FIRED));
  fired->mutable_timer_fired_event_attributes()->set_timer_id(task.timer_id());
  fired->mutable_timer_fired_event_attributes()->set_started_event_id(task.event_id());
  return absl::OkStatus();
}

absl::Status HistoryEngine::FireWorkflowTaskRetry(Mutation& m, const internal::TimerTask& task,
                                                  bool* stale) {
  internal::WorkflowTaskInfo* wt = m.state().mutable_workflow_task();
  if (wt->scheduled_event_id() != task.event_id() || wt->attempt() != task.attempt() ||
      !wt->backing_off()) {
    *stale = true;  // Terminated, reset or otherwise ended while it waited.
    return absl::OkStatus();
  }
  wt->set_backing_off(false);
  ASSIGN_OR_RETURN(int64_t task_id, m.AddTask(keys::TaskKind::kWorkflow, m.state().task_queue(),
                                              wt->scheduled_event_id(), wt->attempt()));
  wt->set_task_id(task_id);
  return absl::OkStatus();
}

absl::Status HistoryEngine::FireActivityRetry(Mutation& m, const internal::TimerTask& task,
                                              bool* stale) {
  auto it = m.state().mutable_activities()->find(task.event_id());
  if (it == m.state().mutable_activities()->end() || it->second.attempt() != task.attempt() ||
      !it->second.backing_off()) {
    *stale = true;
    return absl::OkStatus();
  }
  internal::ActivityInfo& info = it->second;
  info.set_backing_off(false);
  ToProto(m.now(), info.mutable_current_attempt_scheduled_time());
  ASSIGN_OR_RETURN(int64_t task_id, m.AddTask(keys::TaskKind::kActivity, info.task_queue(),
                                              info.scheduled_event_id(), info.attempt()));
  info.set_task_id(task_id);
  absl::Duration schedule_to_start = FromProto(info.schedule_to_start_timeout());
  if (schedule_to_start > absl::ZeroDuration()) {
    RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT,
                               m.now() + schedule_to_start, info.scheduled_event_id(),
                               info.attempt(), api::TIMEOUT_TYPE_SCHEDULE_TO_START)
                        .status());
    info.set_schedule_to_start_timer_key(m.last_timer_key());
  }
  return absl::OkStatus();
}

absl::Status HistoryEngine::FireWorkflowTaskTimeout(Mutation& m, const internal::TimerTask& task,
                                                    bool* stale) {
  const auto wt = m.state().workflow_task();
  if (wt.scheduled_event_id() != task.event_id() || wt.attempt() != task.attempt() ||
      wt.started_event_id() == 0) {
    *stale = true;
    return absl::OkStatus();
  }
  if (!wt.transient()) {  // a transient retry's timeout is not written
    auto* timed_out = m.Append(api::EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)
                          ->mutable_workflow_task_timed_out_event_attributes();
    timed_out->set_scheduled_event_id(wt.scheduled_event_id());
    timed_out->set_started_event_id(wt.started_event_id());
    timed_out->set_timeout_type(api::TIMEOUT_TYPE_START_TO_CLOSE);
  }
  m.state().clear_workflow_task();
  m.state().clear_sticky_worker();  // its worker may be gone
  m.FlushBuffered();
  return m.ScheduleWorkflowTask(wt.attempt() + 1);
}

absl::Status HistoryEngine::FireRunTimeout(Mutation& m) {
  m.FlushBuffered();
  auto* timed_out = m.Append(api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)
                        ->mutable_workflow_execution_timed_out_event_attributes();
  timed_out->set_retry_state(api::RETRY_STATE_TIMEOUT);
  return m.Close(api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT);
}

absl::Status HistoryEngine::FireActivityTimeout(Mutation& m, const internal::TimerTask& task,
                                                bool* stale) {
  auto it = m.state().mutable_activities()->find(task.event_id());
  if (it == m.state().mutable_activities()->end()) {
    *stale = true;
    return absl::OkStatus();
  }
  internal::ActivityInfo* info = &it->second;
  bool started = IsSet(info->started_time());
  bool same_attempt = info->attempt() == task.attempt();
  switch (task.timeout_type()) {
    case api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE: {
      // Final, whatever the attempt: the activity's whole time is up.
      api::Failure failure = TimeoutFailure(task.timeout_type(), info->heartbeat_details());
      return CloseActivity(m, info->scheduled_event_id(), api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                           [&](api::HistoryEvent* event) {
                             auto* a = event->mutable_activity_task_timed_out_event_attributes();
                             *a->mutable_failure() = failure;
                             a->set_retry_state(api::RETRY_STATE_TIMEOUT);
                           });
    }
    case api::TIMEOUT_TYPE_SCHEDULE_TO_START: {
      if (!same_attempt || started || info->backing_off()) {
        *stale = true;
        return absl::OkStatus();
      }
      // Not retried: no worker took the task in time (for a builder, its machine did not wake).
      api::Failure failure = TimeoutFailure(task.timeout_type(), info->heartbeat_details());
      return CloseActivity(m, info->scheduled_event_id(), api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                           [&](api::HistoryEvent* event) {
                             auto* a = event->mutable_activity_task_timed_out_event_attributes();
                             *a->mutable_failure() = failure;
                             a->set_retry_state(api::RETRY_STATE_TIMEOUT);
                           });
    }
    case api::TIMEOUT_TYPE_HEARTBEAT: {
      if (!same_attempt || !started) {
        *stale = true;
        return absl::OkStatus();
      }
      absl::Time last = IsSet(info->last_heartbeat_time()) ? FromProto(info->last_heartbeat_time())
                                                           : FromProto(info->started_time());
      absl::Time due = last + FromProto(info->heartbeat_timeout());
      if (due > m.now()) {
        // A heartbeat came since this timer was set: check again when the new one is due.
        RETURN_IF_ERROR(m.AddTimer(internal::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT, due,
                                   info->scheduled_event_id(), info->attempt(),
                                   api::TIMEOUT_TYPE_HEARTBEAT)
                            .status());
        info->set_heartbeat_timer_key(m.last_timer_key());
        return absl::OkStatus();
      }
      return RetryOrFailActivity(m, info,
                                 TimeoutFailure(task.timeout_type(), info->heartbeat_details()),
                                 api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, nullptr);
    }
    case api::TIMEOUT_TYPE_START_TO_CLOSE: {
      if (!same_attempt || !started) {
        *stale = true;
        return absl::OkStatus();
      }
      // An attempt started at its schedule (eagerly) whose start-to-close is capped by the
      // schedule-to-close ends at the same instant as the whole activity: that is the
      // timeout the workflow set, and it is final.
      if (FromProto(info->schedule_to_close_timeout()) > absl::ZeroDuration() &&
          FromProto(info->scheduled_time()) + FromProto(info->schedule_to_close_timeout()) <=
              m.now()) {
        api::Failure failure =
            TimeoutFailure(api::TIMEOUT_TYPE_SCHEDULE_TO_CLOSE, info->heartbeat_details());
        return CloseActivity(m, info->scheduled_event_id(), api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                             [&](api::HistoryEvent* event) {
                               auto* a = event->mutable_activity_task_timed_out_event_attributes();
                               *a->mutable_failure() = failure;
                               a->set_retry_state(api::RETRY_STATE_TIMEOUT);
                             });
      }
      return RetryOrFailActivity(m, info,
                                 TimeoutFailure(task.timeout_type(), info->heartbeat_details()),
                                 api::EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, nullptr);
    }
    default:
      *stale = true;
      return absl::OkStatus();
  }
}

}  // namespace kiln::orchestrator
