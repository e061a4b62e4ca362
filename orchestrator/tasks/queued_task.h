// The vocabulary history and matching share about a task in a queue: which queue it is on,
// its id there and what it dispatches (QueuedTask), and a poller set aside to receive a task
// the moment its transition commits (TaskReservation). History creates tasks and matching hands
// them out; both include this library, neither includes the other (docs/architecture.md).
#pragma once

#include <cstdint>
#include <string>

#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"

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
  keys::TaskKind kind = keys::TaskKind::kWorkflow;
  std::string ns;
  std::string queue;
};

}  // namespace kiln::orchestrator
