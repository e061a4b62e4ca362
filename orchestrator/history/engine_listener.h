// How history tells the rest of the engine about a committed transition: the tasks it created
// (for matching), the timers it wrote and removed (for the timer queues), the runs whose history
// grew (for waiting readers), and, for start at schedule, the poller to hand a new task to.
// History owns this interface and knows nothing of who implements it; the server implements it
// with matching, the timer queues and the run watchers (server/server.cc), EngineHarness with
// in-memory lists.
#pragma once

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "kiln/api/v1/history.pb.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/tasks/queued_task.h"

namespace kiln::orchestrator {

// Told about each committed transition's effects, after the commit.
class EngineListener {
 public:
  virtual ~EngineListener() = default;
  virtual void TaskAdded(QueuedTask task) = 0;
  // A timer was written to `table` (kTimers or kRetention) at `key`.
  virtual void TimerAdded(Table table, const std::string& key, absl::Time fire_time) = 0;
  // A timer's key was deleted (its task ended first): it must not fire.
  virtual void TimerRemoved(const std::string& key) {}
  // The run's history grew; `closed`: the transition closed it, with `close_event` the event
  // that closed it (borrowed for the call; null when the run stays open).
  virtual void RunChanged(const std::string& run_id, bool closed,
                          const kiln::api::v1::HistoryEvent* close_event) = 0;

  // Start at schedule (see TaskReservation). A listener that returns no reservations (the
  // default) gets every task through TaskAdded.
  virtual std::optional<TaskReservation> ReservePoller(const QueuedTask& task) {
    return std::nullopt;
  }
  // After the commit: the reserved poller gets its task, already started.
  virtual void FulfilReservation(const TaskReservation& reservation, QueuedTask task) {}
  // The commit failed: the reserved poller ends empty.
  virtual void ReleaseReservation(const TaskReservation& reservation) {}
};

}  // namespace kiln::orchestrator
