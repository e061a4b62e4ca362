#include "orchestrator/history/mutation.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {

using kiln::api::v1::EventType;
using kiln::api::v1::HistoryEvent;
using kiln::internal::v1::ExecutionState;
using kiln::internal::v1::TimerTask;
using kiln::internal::v1::TimerTaskType;

namespace {

// The timeout timers `state` refers to (a closed run refers to none).
std::vector<std::string> TaskTimerKeys(const ExecutionState& state) {
  std::vector<std::string> keys;
  if (state.status() != kiln::api::v1::WORKFLOW_EXECUTION_STATUS_RUNNING) return keys;
  auto add = [&](const std::string& key) {
    if (!key.empty()) keys.push_back(key);
  };
  add(state.run_timeout_timer_key());
  add(state.workflow_task().timeout_timer_key());
  for (const auto& [id, activity] : state.activities()) {
    add(activity.start_to_close_timer_key());
    add(activity.schedule_to_start_timer_key());
    add(activity.schedule_to_close_timer_key());
    add(activity.heartbeat_timer_key());
  }
  return keys;
}

}  // namespace

Table TimerTable(TimerTaskType type) {
  return type == TimerTaskType::TIMER_TASK_TYPE_DELETE_HISTORY ? Table::kRetention : Table::kTimers;
}

bool IsTransferTask(TimerTaskType type) {
  switch (type) {
    case TimerTaskType::TIMER_TASK_TYPE_START_CHILD:
    case TimerTaskType::TIMER_TASK_TYPE_CHILD_CLOSED:
    case TimerTaskType::TIMER_TASK_TYPE_PARENT_CLOSE_POLICY:
    case TimerTaskType::TIMER_TASK_TYPE_SIGNAL_EXTERNAL:
    case TimerTaskType::TIMER_TASK_TYPE_CANCEL_EXTERNAL:
      return true;
    default:
      return false;
  }
}

Mutation::Mutation(const ExecutionState& state, absl::Time now, TaskIdAllocator* ids)
    : state_(state), now_(now), ids_(ids), initial_timer_keys_(TaskTimerKeys(state)) {}

bool Mutation::IsOpen() const {
  return state_.status() == kiln::api::v1::WORKFLOW_EXECUTION_STATUS_RUNNING;
}

absl::StatusOr<int64_t> Mutation::TransitionTaskId() {
  if (transition_task_id_ == 0) {
    auto id = ids_->Next();
    if (!id.ok()) return id.status();
    transition_task_id_ = *id;
  }
  return transition_task_id_;
}

HistoryEvent* Mutation::Append(EventType type) {
  HistoryEvent& event = new_events_.emplace_back();
  event.set_event_id(state_.next_event_id());
  state_.set_next_event_id(state_.next_event_id() + 1);
  event.set_event_type(type);
  ToProto(now_, event.mutable_event_time());
  return &event;
}

absl::StatusOr<HistoryEvent*> Mutation::AddWorkflowEvent(EventType type) {
  const auto& wt = state_.workflow_task();
  if (wt.scheduled_event_id() != 0 && wt.started_event_id() != 0) {
    if (static_cast<size_t>(state_.buffered_events_size()) >= limits::kMaxBufferedEvents) {
      return absl::ResourceExhaustedError(
          absl::StrCat("run ", state_.run_id(), " has ", limits::kMaxBufferedEvents,
                       " events waiting for its running workflow task (limit)"));
    }
    HistoryEvent* event = state_.add_buffered_events();
    event->set_event_type(type);
    ToProto(now_, event->mutable_event_time());
    return event;
  }
  // The workflow task is scheduled in Build, after every event of this transition.
  needs_workflow_task_ = true;
  return Append(type);
}

void Mutation::FlushBuffered() {
  // Activity close events refer to their started event, whose id is only known now.
  absl::flat_hash_map<int64_t, int64_t> started_ids;
  for (HistoryEvent& buffered : *state_.mutable_buffered_events()) {
    HistoryEvent* event = Append(buffered.event_type());
    int64_t id = event->event_id();
    *event = std::move(buffered);
    event->set_event_id(id);
    switch (event->attributes_case()) {
      case HistoryEvent::kActivityTaskStartedEventAttributes:
        started_ids[event->activity_task_started_event_attributes().scheduled_event_id()] = id;
        break;
      case HistoryEvent::kActivityTaskCompletedEventAttributes: {
        auto* a = event->mutable_activity_task_completed_event_attributes();
        if (auto it = started_ids.find(a->scheduled_event_id()); it != started_ids.end()) {
          a->set_started_event_id(it->second);
        }
        break;
      }
      case HistoryEvent::kActivityTaskFailedEventAttributes: {
        auto* a = event->mutable_activity_task_failed_event_attributes();
        if (auto it = started_ids.find(a->scheduled_event_id()); it != started_ids.end()) {
          a->set_started_event_id(it->second);
        }
        break;
      }
      case HistoryEvent::kActivityTaskTimedOutEventAttributes: {
        auto* a = event->mutable_activity_task_timed_out_event_attributes();
        if (auto it = started_ids.find(a->scheduled_event_id()); it != started_ids.end()) {
          a->set_started_event_id(it->second);
        }
        break;
      }
      case HistoryEvent::kActivityTaskCanceledEventAttributes: {
        auto* a = event->mutable_activity_task_canceled_event_attributes();
        if (auto it = started_ids.find(a->scheduled_event_id()); it != started_ids.end()) {
          a->set_started_event_id(it->second);
        }
        break;
      }
      default:
        break;
    }
  }
  state_.clear_buffered_events();
}

absl::Status Mutation::ScheduleWorkflowTask(int32_t attempt) {
  if (!IsOpen() || state_.workflow_task().scheduled_event_id() != 0) return absl::OkStatus();
  auto* wt = state_.mutable_workflow_task();
  wt->Clear();
  if (attempt > 1 && state_.transient_workflow_task_retries()) {
    // A retry kept transient: its events take the next ids when it completes.
    wt->set_transient(true);
    wt->set_scheduled_event_id(state_.next_event_id());
  } else {
    HistoryEvent* event = Append(kiln::api::v1::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
    auto* attrs = event->mutable_workflow_task_scheduled_event_attributes();
    attrs->mutable_task_queue()->set_name(state_.task_queue());
    *attrs->mutable_start_to_close_timeout() = state_.workflow_task_timeout();
    attrs->set_attempt(attempt);
    wt->set_scheduled_event_id(event->event_id());
  }
  const int64_t scheduled_event_id = wt->scheduled_event_id();
  wt->set_attempt(attempt);
  ToProto(now_, wt->mutable_scheduled_time());
  if (const absl::Duration backoff = limits::WorkflowTaskRetryBackoff(attempt);
      backoff > absl::ZeroDuration()) {
    // A task failing again and again: its backlog task waits out the backoff.
    wt->set_backing_off(true);
    return AddTimer(kiln::internal::v1::TIMER_TASK_TYPE_WORKFLOW_TASK_RETRY, now_ + backoff,
                    scheduled_event_id, attempt)
        .status();
  }
  auto task_id =
      AddTask(keys::TaskKind::kWorkflow, state_.task_queue(), scheduled_event_id, attempt);
  if (!task_id.ok()) return task_id.status();
  wt->set_task_id(*task_id);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Mutation::AddTask(keys::TaskKind kind, const std::string& queue,
                                          int64_t scheduled_event_id, int32_t attempt) {
  auto task_id = ids_->Next();
  if (!task_id.ok()) return task_id.status();
  QueuedTask& task = new_tasks_.emplace_back();
  task.kind = kind;
  task.ns = state_.namespace_();
  task.queue = queue;
  task.task_id = *task_id;
  task.record.set_namespace_(state_.namespace_());
  task.record.set_workflow_id(state_.workflow_id());
  task.record.set_run_id(state_.run_id());
  task.record.set_scheduled_event_id(scheduled_event_id);
  task.record.set_attempt(attempt);
  ToProto(now_, task.record.mutable_created_time());
  // Its backlog entry is written by Build, unless the task is started in this transition.
  return *task_id;
}

void Mutation::DeleteTask(keys::TaskKind kind, const std::string& queue, int64_t task_id) {
  if (task_id == 0) return;
  for (auto it = new_tasks_.begin(); it != new_tasks_.end(); ++it) {
    if (it->task_id == task_id && it->kind == kind && it->queue == queue) {
      new_tasks_.erase(it);  // Created in this transition: never written.
      return;
    }
  }
  batch_.Delete(Table::kTasks, keys::Task(kind, state_.namespace_(), queue, task_id));
}

absl::StatusOr<int64_t> Mutation::AddTimer(TimerTaskType type, absl::Time fire_time,
                                           int64_t event_id, int32_t attempt,
                                           kiln::api::v1::TimeoutType timeout_type,
                                           const std::string& timer_id) {
  TimerTask timer = NewTimerTask(type, event_id);
  timer.set_attempt(attempt);
  timer.set_timeout_type(timeout_type);
  timer.set_timer_id(timer_id);
  return WriteTimer(std::move(timer), fire_time);
}

TimerTask Mutation::NewTimerTask(TimerTaskType type, int64_t event_id) const {
  TimerTask timer;
  timer.set_type(type);
  timer.set_namespace_(state_.namespace_());
  timer.set_workflow_id(state_.workflow_id());
  timer.set_run_id(state_.run_id());
  timer.set_event_id(event_id);
  return timer;
}

absl::StatusOr<int64_t> Mutation::WriteTimer(TimerTask timer, absl::Time fire_time) {
  auto task_id = ids_->Next();
  if (!task_id.ok()) return task_id.status();
  ToProto(fire_time, timer.mutable_fire_time());
  timer.set_task_id(*task_id);
  std::string key = keys::Timer(fire_time, *task_id);
  const Table table = TimerTable(timer.type());
  batch_.Put(table, key, timer.SerializeAsString());
  const bool tracked = timer.type() == TimerTaskType::TIMER_TASK_TYPE_ACTIVITY_TIMEOUT ||
                       timer.type() == TimerTaskType::TIMER_TASK_TYPE_WORKFLOW_TASK_TIMEOUT ||
                       timer.type() == TimerTaskType::TIMER_TASK_TYPE_WORKFLOW_RUN_TIMEOUT;
  new_timers_.push_back({table, std::move(key), fire_time, tracked});
  return *task_id;
}

absl::Status Mutation::Close(kiln::api::v1::WorkflowExecutionStatus status) {
  closed_now_ = true;
  state_.set_status(status);
  ToProto(now_, state_.mutable_close_time());
  state_.set_close_event_id(state_.next_event_id() - 1);
  close_event_id_ = state_.close_event_id();
  // Pending work can no longer matter: take it out of the queues now rather than letting
  // pollers and the timer queue find it stale later.
  const auto& wt = state_.workflow_task();
  if (wt.started_event_id() == 0) {
    DeleteTask(keys::TaskKind::kWorkflow, state_.task_queue(), wt.task_id());
  }
  for (const auto& [id, activity] : state_.activities()) {
    DeleteTask(keys::TaskKind::kActivity, activity.task_queue(), activity.task_id());
  }
  for (const auto& [id, timer] : state_.timers()) {
    batch_.Delete(Table::kTimers, keys::Timer(FromProto(timer.fire_time()), timer.task_id()));
  }
  // A child tells its parent how it closed (a continued run's successor will instead).
  if (!state_.parent_run_id().empty() &&
      status != kiln::api::v1::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW) {
    RETURN_IF_ERROR(AddTransfer(kiln::internal::v1::TIMER_TASK_TYPE_CHILD_CLOSED,
                                state_.parent_initiated_event_id(), state_.parent_workflow_id(),
                                state_.parent_run_id())
                        .status());
  }
  for (const auto& [initiated, child] : state_.children()) {
    if (child.parent_close_policy() == kiln::api::v1::PARENT_CLOSE_POLICY_ABANDON) continue;
    RETURN_IF_ERROR(AddTransfer(kiln::internal::v1::TIMER_TASK_TYPE_PARENT_CLOSE_POLICY, initiated,
                                child.workflow_id(), child.run_id(), child.parent_close_policy())
                        .status());
  }
  state_.clear_workflow_task();
  state_.clear_activities();
  state_.clear_timers();
  state_.clear_buffered_events();
  state_.clear_children();
  state_.clear_external_requests();
  visibility_dirty_ = true;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Mutation::AddTransfer(kiln::internal::v1::TimerTaskType type,
                                              int64_t event_id,
                                              const std::string& target_workflow_id,
                                              const std::string& target_run_id,
                                              kiln::api::v1::ParentClosePolicy policy) {
  TimerTask timer = NewTimerTask(type, event_id);
  timer.set_target_workflow_id(target_workflow_id);
  timer.set_target_run_id(target_run_id);
  timer.set_parent_close_policy(policy);
  return WriteTimer(std::move(timer), now_);
}

kiln::internal::v1::VisibilityRecord MakeVisibilityRecord(const ExecutionState& state) {
  kiln::internal::v1::VisibilityRecord record;
  record.set_namespace_(state.namespace_());
  record.set_workflow_id(state.workflow_id());
  record.set_run_id(state.run_id());
  record.set_workflow_type(state.workflow_type());
  record.set_status(state.status());
  *record.mutable_start_time() = state.start_time();
  *record.mutable_close_time() = state.close_time();
  record.set_history_length(state.next_event_id() - 1);
  record.set_task_queue(state.task_queue());
  *record.mutable_search_attributes() = state.search_attributes();
  *record.mutable_memo() = state.memo();
  record.set_first_run_id(state.first_run_id());
  return record;
}

void Mutation::WriteVisibility() {
  batch_.Put(Table::kVisibility,
             keys::Visibility(state_.namespace_(), FromProto(state_.start_time()), state_.run_id()),
             MakeVisibilityRecord(state_).SerializeAsString());
}

const kiln::api::v1::HistoryEvent* Mutation::close_event() const {
  if (!closed_now_) return nullptr;
  // The close event is the last one Close saw appended: search from the back.
  for (auto it = new_events_.rbegin(); it != new_events_.rend(); ++it) {
    if (it->event_id() == close_event_id_) return &*it;
  }
  return nullptr;
}

absl::Status Mutation::Finalize() {
  // Again after more changes (a workflow task started and completed in one transition): each
  // call schedules what the changes since the last one need.
  if (needs_workflow_task_) RETURN_IF_ERROR(ScheduleWorkflowTask());
  needs_workflow_task_ = false;
  for (; sized_events_ < new_events_.size(); ++sized_events_) {
    added_bytes_ += static_cast<int64_t>(new_events_[sized_events_].ByteSizeLong());
  }
  bool too_long = state_.next_event_id() - 1 > limits::kMaxHistoryEvents;
  bool too_big = state_.history_size_bytes() + added_bytes_ > limits::kMaxHistoryBytes;
  if (IsOpen() && (too_long || too_big)) {
    FlushBuffered();
    HistoryEvent* event = Append(kiln::api::v1::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
    event->mutable_workflow_execution_terminated_event_attributes()->set_reason(
        too_long
            ? absl::StrCat("history length limit of ", limits::kMaxHistoryEvents,
                           " events exceeded")
            : absl::StrCat("history size limit of ", limits::kMaxHistoryBytes, " bytes exceeded"));
    event->mutable_workflow_execution_terminated_event_attributes()->set_identity("kiln-history");
    RETURN_IF_ERROR(Close(kiln::api::v1::WORKFLOW_EXECUTION_STATUS_TERMINATED));
  }
  return absl::OkStatus();
}

absl::StatusOr<WriteBatch> Mutation::Build() {
  if (built_) return absl::InternalError("Mutation::Build called twice");
  RETURN_IF_ERROR(Finalize());
  built_ = true;
  const bool any_tracked = std::any_of(new_timers_.begin(), new_timers_.end(),
                                       [](const NewTimer& timer) { return timer.tracked; });
  if (!initial_timer_keys_.empty() || any_tracked) {
    // A task that ended (or a run that closed) leaves no timer behind to fire stale.
    std::vector<std::string> kept = TaskTimerKeys(state_);
    auto held = [&](const std::string& key) {
      return std::find(kept.begin(), kept.end(), key) != kept.end();
    };
    for (std::string& key : initial_timer_keys_) {
      if (held(key)) continue;
      batch_.Delete(Table::kTimers, key);
      removed_timers_.push_back(std::move(key));
    }
    // Written in this transition and already moot: never written, never queued.
    std::erase_if(new_timers_, [&](const NewTimer& timer) {
      if (!timer.tracked || held(timer.key)) return false;
      if (!batch_.Unput(Table::kTimers, timer.key)) batch_.Delete(Table::kTimers, timer.key);
      return true;
    });
  }
  auto transition_id = TransitionTaskId();
  if (!transition_id.ok()) return transition_id.status();

  for (const QueuedTask& task : new_tasks_) {
    if (task.started_request_id.empty()) {
      batch_.Put(Table::kTasks, task.Key(), task.record.SerializeAsString());
    }
  }
  int64_t added_bytes = 0;
  for (HistoryEvent& event : new_events_) {
    added_bytes += event.ByteSizeLong();
    event.set_task_id(*transition_id);
    batch_.Put(Table::kHistory, keys::HistoryEvent(state_.run_id(), event.event_id()),
               event.SerializeAsString());
  }
  state_.set_history_size_bytes(state_.history_size_bytes() + added_bytes);
  state_.set_db_version(state_.db_version() + 1);
  if (visibility_dirty_) WriteVisibility();
  batch_.Put(Table::kExecutions, keys::Execution(state_.run_id()), state_.SerializeAsString());
  return std::move(batch_);
}

}  // namespace kiln::orchestrator
