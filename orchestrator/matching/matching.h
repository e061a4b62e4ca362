// Matching: the engine's task queues. A transition that creates a task writes its backlog entry
// (Table::kTasks) in the transition's own batch; once that batch is committed, the history
// service calls TaskAdded. Matching then hands the task straight to a waiting poller (sync
// match) or keeps it for the next poll; a bounded number of tasks per queue are kept in
// memory, the rest stay in the store and are read back in task-id order when the in-memory
// buffer runs dry. After a restart, queues start "unknown" and read their backlog from the
// store on first use, so no task is lost and open queues are not all loaded at start.
//
// Long polls hold no thread: a waiting poll is a callback plus a clock alarm for its deadline.
// A task handed to a poller is "in flight" until the caller says Done (its backlog entry was
// deleted by the started transition, or it was found stale) or Return (not used).
//
// Exclusive queues: one poller identity holds a queue at a time (a builder agent serves its
// project's queue alone). An exclusive poll on a queue that no lease holds takes the lease for
// its identity; while the lease lives, other identities' polls on that queue, exclusive or not,
// are refused with kFailedPrecondition naming the holder. The lease lives while the holder has a
// poll waiting, and for MatchingOptions::exclusive_lease after the holder's last poll began or
// ended; then the next poll may take it. The lease is in memory only: after an orchestrator
// restart no queue is held, and the first exclusive poll takes it. A queue is one (kind,
// namespace, name): a workflow queue and the activity queue of the same name are leased apart.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/tasks/queued_task.h"

namespace kiln::orchestrator {

struct MatchingOptions {
  // Tasks of one queue held in memory; the rest wait in the store.
  size_t max_buffered_tasks_per_queue = 1000;
  // Waiting polls allowed on one queue, and in all.
  size_t max_pollers_per_queue = 1000;
  size_t max_pollers_total = 20000;
  // A queue with no pollers, no buffered and no in-flight task for this long is forgotten.
  absl::Duration idle_queue_unload = absl::Minutes(5);
  // Pollers not seen for this long drop out of Describe.
  absl::Duration poller_expiry = absl::Minutes(5);
  // Backlog entries Describe reads at most: counting a huge backlog must not stall the caller.
  size_t max_describe_scan = 100'000;
  // How long an exclusive lease outlives its holder's last poll.
  absl::Duration exclusive_lease = absl::Seconds(10);
};

struct PollOptions {
  // Hold the queue for this poll's identity (see "Exclusive queues" above). A poll from the
  // lease's holder renews it whether or not it asks for exclusivity.
  bool exclusive = false;
  // The polling worker's instance, handed on with a reservation (TaskReservation).
  std::string worker_instance_id;
  // The poll is a worker stream's credit (WorkerStream), not a long poll: Describe says so.
  bool stream = false;
};

struct PollerInfo {
  std::string identity;
  absl::Time last_seen;
  // Its polls waiting in the queue now (a worker stream's unused credits are polls too).
  int waiting = 0;
  // Its tasks come on a worker stream (its last poll, or one waiting now, was a stream's).
  bool stream = false;
};

struct QueueDescription {
  // Tasks in the backlog (store), including in-flight ones not yet started.
  int64_t backlog_count = 0;
  // The count stopped at MatchingOptions::max_describe_scan: the backlog holds at least that many.
  bool backlog_count_capped = false;
  // Created time of the oldest backlog task (InfinitePast when none).
  absl::Time oldest_task_created = absl::InfinitePast();
  std::vector<PollerInfo> pollers;
  // The identity holding the queue's exclusive lease; empty when no lease is live.
  std::string exclusive_holder;
  // When the lease lapses if its holder stops polling now (a holder's poll still waiting keeps
  // it until that poll ends); InfinitePast when no lease is live.
  absl::Time exclusive_lease_expiry = absl::InfinitePast();
};

class Matching {
 public:
  using PollId = uint64_t;
  // Runs exactly once per accepted poll: with a task (now in flight), or with nullopt when the
  // deadline passes, the poll is cancelled, another identity takes the queue exclusively, or
  // matching shuts down. It may run inline inside Poll or TaskAdded, on the clock's alarm
  // thread, or inside CancelPoll; never under matching's own lock. It must not block.
  using PollCallback = std::function<void(std::optional<QueuedTask>)>;

  Matching(Store* store, Clock* clock, prometheus::Registry* registry,
           MatchingOptions options = {});
  // Answers every waiting poll with nullopt.
  ~Matching();
  Matching(const Matching&) = delete;
  Matching& operator=(const Matching&) = delete;

  // `task`'s backlog entry has just been committed.
  void TaskAdded(QueuedTask task);

  // Starts a long poll. Fails with kFailedPrecondition while another identity holds the
  // queue's exclusive lease, with kInvalidArgument for an exclusive poll without an identity,
  // with kResourceExhausted past the poller limits, or with the store's error if reading the
  // backlog fails; a refused poll's callback never runs. An exclusive poll that takes the lease
  // ends the other identities' polls waiting on the queue (their callbacks run with nullopt).
  absl::StatusOr<PollId> Poll(keys::TaskKind kind, std::string_view ns, std::string_view queue,
                              std::string_view identity, absl::Time deadline, PollCallback callback,
                              PollOptions options = {});
  // Ends a waiting poll (its callback runs with nullopt). No effect once it was answered.
  void CancelPoll(PollId id);

  // The in-flight task is finished with: its backlog entry is gone.
  void Done(const QueuedTask& task);
  // The in-flight task was not used: it becomes available again (first in line).
  void Return(QueuedTask task);

  // Reads the backlog count and oldest task from the store (bounded scan) plus live pollers
  // and the exclusive lease.
  absl::StatusOr<QueueDescription> Describe(keys::TaskKind kind, std::string_view ns,
                                            std::string_view queue);

  // Start at schedule: a transition that creates a task may first take a waiting poll off the
  // task's queue, start the task for that poller in its own batch, and once the batch is
  // committed hand the started task over with Fulfil (or, if the commit failed, end the poll
  // empty with Release). That saves the separate "started" transition. Exactly one of Fulfil
  // or Release must follow a Reserve.
  // The reservation type is shared with history (orchestrator/tasks/queued_task.h).
  using Reservation = TaskReservation;
  static_assert(std::is_same_v<decltype(Reservation::poll_id), PollId>);
  // nullopt when nobody waits on the queue, or older tasks are buffered or in the store (they
  // go first), or matching is shut down.
  // `preferred_instance`: a poll of that worker instance (PollOptions::worker_instance_id) is
  // taken before the longest waiting one, if it is among the first few: the worker that holds
  // the task's run in its cache (a workflow task's sticky worker).
  std::optional<Reservation> Reserve(keys::TaskKind kind, std::string_view ns,
                                     std::string_view queue,
                                     std::string_view preferred_instance = {});
  // The reserved poll's callback runs with `task` (in flight until Done, like any handed-out
  // task); with nullopt if matching has shut down meanwhile.
  void Fulfil(const Reservation& reservation, QueuedTask task);
  // The reserved poll's callback runs with nullopt: its poller polls again.
  void Release(const Reservation& reservation);

  // Fails every waiting poll with nullopt and refuses new ones (kUnavailable).
  void Shutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::orchestrator
