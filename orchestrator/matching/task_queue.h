// TaskQueue: one task queue's in-memory state inside Matching. It keeps the bookkeeping
// consistent (every buffered task is known, every known task is buffered or in flight, the
// gauges follow the buffer and the waiters); the policy (who gets what, when to read the
// store) stays in Matching. Not thread-safe: Matching's mutex guards every TaskQueue.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "orchestrator/matching/exclusive_lease.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/matching/matching_metrics.h"

namespace kiln::orchestrator::matching_internal {

// Pollers remembered per queue for Describe; past this, the least recently seen is forgotten.
inline constexpr size_t kMaxPollerIdentitiesPerQueue = 1024;
// Ids of recently finished tasks remembered per queue, so that a TaskAdded arriving after its
// task was already read from the store, handed out and finished does not deliver it again.
inline constexpr size_t kRecentlyDoneIds = 1024;

// A poll waiting for a task.
struct Waiter {
  Matching::PollId poll_id = 0;
  std::string identity;
  Matching::PollCallback callback;
  std::string worker_instance_id;
  // The deadline alarm; 0 when the poll has none (an infinite deadline).
  AlarmId alarm = 0;
  // A worker stream's credit (PollOptions::stream).
  bool stream = false;
};

class TaskQueue {
 public:
  using WaiterList = std::list<Waiter>;

  // `exclusive_lease`: how long an exclusive lease outlives its holder's last poll.
  TaskQueue(keys::TaskKind kind, std::string ns, std::string queue, absl::Duration exclusive_lease,
            MatchingMetrics* metrics);
  // Takes what is still buffered or waiting off the gauges.
  ~TaskQueue();
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  keys::TaskKind kind() const { return kind_; }
  const std::string& ns() const { return ns_; }
  const std::string& queue() const { return queue_; }

  // --- Tasks known in memory: buffered or in flight.
  bool Knows(int64_t task_id) const { return known_.contains(task_id); }
  bool IsBuffered(int64_t task_id) const;
  bool RecentlyDone(int64_t task_id) const { return recently_done_.contains(task_id); }
  absl::flat_hash_set<int64_t> KnownIds() const;
  size_t buffered() const { return buffer_.size(); }
  size_t in_flight() const { return known_.size() - buffer_.size(); }

  // Adds a task that is not known yet (or was in flight) to the buffer.
  void PushBack(QueuedTask task);
  void PushFront(QueuedTask task);
  // Takes the first buffered task; it is in flight from now on. The buffer must not be empty.
  QueuedTask PopFront();
  // Drops the last buffered task from memory (it stays in the store). False when empty.
  bool EvictBack();
  // Marks a task that never went through the buffer as in flight (sync match).
  void MarkInFlight(int64_t task_id);
  // The task is finished with: forgets it (even if it was buffered) and remembers it as done.
  void MarkDone(int64_t task_id);
  // Forgets an in-flight task without marking it done (it is back to being in the store only).
  void Forget(int64_t task_id);

  // --- "The store may hold tasks that are not in memory."
  bool store_may_have_more() const { return store_may_have_more_; }
  void SetStoreMayHaveMore() {
    store_may_have_more_ = true;
    ++overflow_epoch_;
  }
  void ClearStoreMayHaveMore() { store_may_have_more_ = false; }
  // Bumped by every SetStoreMayHaveMore: a store read that started at an older epoch cannot
  // tell whether the tasks dropped since are in its snapshot, so it must not clear the flag.
  uint64_t overflow_epoch() const { return overflow_epoch_; }

  // --- A store read in progress (at most one per queue; it runs outside Matching's lock).
  bool scanning() const { return scanning_; }
  void BeginScan();
  void EndScan();
  // Finished while the read was running: the read's snapshot may still hold its entry.
  bool DoneDuringScan(int64_t task_id) const { return done_during_scan_.contains(task_id); }

  // --- Waiting polls, first come first served. Adding and taking a waiter at `now` also
  // starts and ends its poll on the exclusive lease.
  bool has_waiters() const { return !waiters_.empty(); }
  size_t waiter_count() const { return waiters_.size(); }
  WaiterList::iterator AddWaiter(Waiter waiter, absl::Time now);
  Waiter TakeWaiter(WaiterList::iterator it, absl::Time now);
  // The longest waiting poll, or, when one of the first few is of `preferred_instance`, that one.
  std::optional<Waiter> TakeFirstWaiter(absl::Time now, std::string_view preferred_instance = {});
  // The waiting polls of identities other than `identity`.
  std::vector<Matching::PollId> WaitersNotOf(const std::string& identity) const;

  // --- The exclusive lease.
  const ExclusiveLease& lease() const { return lease_; }
  // `identity` takes the lease, which is not live (its polls already waiting count for it).
  void TakeLease(const std::string& identity, absl::Time now);
  // A poll of `identity` arrived: renews the lease if `identity` holds it.
  void RenewLease(const std::string& identity, absl::Time now) { lease_.Renew(identity, now); }

  // --- Pollers, for Describe.
  // `stream`: the poll is a worker stream's credit.
  void RecordPoller(const std::string& identity, absl::Time now, absl::Duration expiry,
                    bool stream);
  // Pollers seen within `expiry`, and every poller waiting now, by identity.
  std::vector<PollerInfo> LivePollers(absl::Time now, absl::Duration expiry) const;

  // --- Unloading: nothing waits, nothing is buffered or in flight, no read is running. A live
  // exclusive lease also keeps the queue (see Matching's unload alarm): the holder has no poll
  // waiting then, so only its expiry matters.
  bool IsIdle() const { return waiters_.empty() && known_.empty() && !scanning_; }
  absl::Time last_active = absl::InfinitePast();
  // The pending unload alarm, 0 when none.
  AlarmId unload_alarm = 0;

 private:
  enum class TaskState : uint8_t { kBuffered, kInFlight };

  const keys::TaskKind kind_;
  const std::string ns_;
  const std::string queue_;
  MatchingMetrics* const metrics_;

  std::deque<QueuedTask> buffer_;
  absl::flat_hash_map<int64_t, TaskState> known_;
  // Insertion order of recently_done_, to forget the oldest.
  std::deque<int64_t> recently_done_order_;
  absl::flat_hash_set<int64_t> recently_done_;

  // True for a queue first seen after start-up: its backlog has not been read yet.
  bool store_may_have_more_ = true;
  uint64_t overflow_epoch_ = 0;
  bool scanning_ = false;
  absl::flat_hash_set<int64_t> done_during_scan_;

  WaiterList waiters_;
  struct PollerSeen {
    absl::Time at;
    bool stream = false;
  };
  absl::flat_hash_map<std::string, PollerSeen> pollers_;
  ExclusiveLease lease_;
};

}  // namespace kiln::orchestrator::matching_internal
