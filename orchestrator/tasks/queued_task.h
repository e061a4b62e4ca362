// The vocabulary history and matching share about a task in a queue: which queue it is on,
// its id there and what it dispatches (QueuedTask), and a poller set aside to receive a task
// the moment its transition commits (TaskReservation). History creates tasks and matching hands
// them out; both include this library, neither includes the other (docs/architecture.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::api::v1 {
class PollWorkflowTaskQueueResponse;
class PollActivityTaskQueueResponse;
}  // namespace kiln::api::v1

namespace kiln::orchestrator {

// A task in a backlog: which queue, its id there, and what it dispatches.
struct QueuedTask {
  keys::TaskKind kind = keys::TaskKind::kWorkflow;
  std::string ns;
  std::string queue;
  int64_t task_id = 0;
  kiln::internal::v1::TaskRecord record;
  // Set when the transition that created the task also started it for a reserved poller (see
  // TaskReservation): the poll answers as a retry of that start with this request id. Such a
  // task has no backlog entry.
  std::string started_request_id;
  // A task started that way comes with its poll's answer, built by the transition (the run's
  // state after the start, the history the poller needs), which the poll sends as it is: no
  // second hold of the run's lock. A workflow task's may come before its commit has synced
  // (HistoryEngine::Commit, "before the sync"). Null: the poll records the start as a retry.
  // Only ever handed to one poll.
  std::shared_ptr<kiln::api::v1::PollWorkflowTaskQueueResponse> answer;
  std::shared_ptr<kiln::api::v1::PollActivityTaskQueueResponse> activity_answer;

  // The task's backlog key (Table::kTasks).
  std::string Key() const;
};

// Start at schedule: a waiting poll taken off a task's queue before the transition that creates
// the task commits, so the transition can start the task for that poller in its own batch
// (Matching::Reserve, Fulfil and Release say what happens to the poll).
struct TaskReservation {
  // Matching's id of the reserved poll (Matching::PollId).
  uint64_t poll_id = 0;
  std::string identity;
  // The poller's worker instance (PollOptions::worker_instance_id): a workflow task's answer
  // built ahead carries the partial history a worker holding the run needs.
  std::string worker_instance_id;
  keys::TaskKind kind = keys::TaskKind::kWorkflow;
  std::string ns;
  std::string queue;
};

}  // namespace kiln::orchestrator
