// A Mutation is one transition of one run in the making: it works on a copy of the run's
// state, appends events (assigning ids), creates backlog tasks and timers, and at the end
// produces ONE WriteBatch holding the events, the new state, the tasks, the timers and the
// visibility record. Nothing reaches the cache or the queues until that batch is committed.
#pragma once

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/api/v1/history.pb.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/history/task_id_allocator.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/tasks/queued_task.h"

namespace kiln::orchestrator {

struct NewTimer {
  Table table = Table::kTimers;  // or kRetention (see TimerTable)
  std::string key;
  absl::Time fire_time;
  // A timeout timer (run, workflow task, activity) whose key the state must hold to keep it.
  bool tracked = false;
};

// The table a timer of this type lives in: kRetention for DELETE_HISTORY, kTimers otherwise.
Table TimerTable(kiln::internal::v1::TimerTaskType type);

// Whether a task of this type is a transfer task (work on another run, due now; see
// transfers.cc) rather than a timer of the run itself. Listed by name, not by enum order, so a
// new type is a timer until it is added here.
bool IsTransferTask(kiln::internal::v1::TimerTaskType type);

class Mutation {
 public:
  // `state` is the run's state before the transition (a copy is changed).
  Mutation(const kiln::internal::v1::ExecutionState& state, absl::Time now, TaskIdAllocator* ids);

  kiln::internal::v1::ExecutionState& state() { return state_; }
  absl::Time now() const { return now_; }
  bool IsOpen() const;

  // Appends an event to the history now, with the next event id.
  kiln::api::v1::HistoryEvent* Append(kiln::api::v1::EventType type);
  // Adds an event the workflow must see: appended now unless a workflow task is running, in
  // which case it is buffered until that task ends. A workflow task is scheduled (at Build, if
  // none is pending then). Fails when the buffer is full.
  absl::StatusOr<kiln::api::v1::HistoryEvent*> AddWorkflowEvent(kiln::api::v1::EventType type);
  // Moves buffered events into the history (ids assigned in order).
  void FlushBuffered();

  // Schedules a workflow task unless one is pending (scheduled or started).
  absl::Status ScheduleWorkflowTask(int32_t attempt = 1);

  // Writes a backlog entry; returns its task id.
  absl::StatusOr<int64_t> AddTask(keys::TaskKind kind, const std::string& queue,
                                  int64_t scheduled_event_id, int32_t attempt);
  // Writes a timer task; returns its task id.
  absl::StatusOr<int64_t> AddTimer(kiln::internal::v1::TimerTaskType type, absl::Time fire_time,
                                   int64_t event_id, int32_t attempt,
                                   kiln::api::v1::TimeoutType timeout_type = {},
                                   const std::string& timer_id = {});
  // A write of this transition outside the run's state and history (e.g. a signal's dedup
  // record), committed with it.
  void Put(Table table, std::string key, std::string value) {
    batch_.Put(table, std::move(key), std::move(value));
  }
  void Delete(Table table, std::string key) { batch_.Delete(table, std::move(key)); }
  void DeleteTask(keys::TaskKind kind, const std::string& queue, int64_t task_id);

  // Closes the run with `status`; the close event must already be appended. Drops pending
  // work (backlog tasks, user timers) that can no longer matter, and queues the transfer work
  // a close implies: telling the parent, applying the parent close policy to children.
  absl::Status Close(kiln::api::v1::WorkflowExecutionStatus status);
  // Adds a transfer task (durable work on another run, due now).
  absl::StatusOr<int64_t> AddTransfer(kiln::internal::v1::TimerTaskType type, int64_t event_id,
                                      const std::string& target_workflow_id = {},
                                      const std::string& target_run_id = {},
                                      kiln::api::v1::ParentClosePolicy policy = {});

  // True once Close has run in this transition.
  bool closed_now() const { return closed_now_; }
  // The event that closed the run in this transition (null if none); valid after the commit
  // too, since a closing transition's events stay here (the run cache keeps none of them).
  const kiln::api::v1::HistoryEvent* close_event() const;

  // Marks the visibility record for rewriting (it always is on start and close).
  void TouchVisibility() { visibility_dirty_ = true; }

  // Ends the transition's changes to the run: schedules the workflow task that added events
  // need, and enforces the history limits (a run past them is terminated in this same
  // transition). Build calls it; call it first to start new tasks in this transition (and
  // again after further changes).
  absl::Status Finalize();
  // Serializes everything into one batch.
  absl::StatusOr<WriteBatch> Build();

  // The tasks this transition creates; after a successful commit, what the queues must learn.
  // One whose started_request_id is set was started in this transition and gets no backlog
  // entry.
  std::vector<QueuedTask>& new_tasks() { return new_tasks_; }
  std::vector<NewTimer>& new_timers() { return new_timers_; }
  // Timeout timers of tasks that ended in this transition (their keys deleted in the batch).
  const std::vector<std::string>& removed_timers() const { return removed_timers_; }
  // The key of the timer AddTimer wrote last.
  const std::string& last_timer_key() const { return new_timers_.back().key; }
  const std::deque<kiln::api::v1::HistoryEvent>& new_events() const { return new_events_; }
  // After the commit, the run cache takes the events it keeps from here (see RunCache::Remember).
  std::deque<kiln::api::v1::HistoryEvent>& committed_events() { return new_events_; }

 private:
  absl::StatusOr<int64_t> TransitionTaskId();
  // A timer task of this run, and writing one (with a new task id) into the batch.
  kiln::internal::v1::TimerTask NewTimerTask(kiln::internal::v1::TimerTaskType type,
                                             int64_t event_id) const;
  absl::StatusOr<int64_t> WriteTimer(kiln::internal::v1::TimerTask timer, absl::Time fire_time);
  void WriteVisibility();

  kiln::internal::v1::ExecutionState state_;
  absl::Time now_;
  TaskIdAllocator* ids_;
  int64_t transition_task_id_ = 0;
  std::deque<kiln::api::v1::HistoryEvent> new_events_;  // deque: returned pointers stay valid
  std::vector<QueuedTask> new_tasks_;
  std::vector<NewTimer> new_timers_;
  // Timeout timers the state held before the transition; those it no longer holds at Build
  // are deleted (and so are tracked timers written in this transition that it no longer
  // holds: an activity scheduled and started in one transition needs no schedule-to-start).
  std::vector<std::string> initial_timer_keys_;
  std::vector<std::string> removed_timers_;
  WriteBatch batch_;
  bool visibility_dirty_ = false;
  bool built_ = false;
  bool needs_workflow_task_ = false;
  // Bytes of new_events_[0, sized_events_), counted by Finalize.
  size_t sized_events_ = 0;
  int64_t added_bytes_ = 0;
  bool closed_now_ = false;
  int64_t close_event_id_ = 0;
};

kiln::internal::v1::VisibilityRecord MakeVisibilityRecord(
    const kiln::internal::v1::ExecutionState& state);

}  // namespace kiln::orchestrator
