// Matching's implementation: the table of queues, the table of waiting polls, and the one lock
// that guards both. Per-queue bookkeeping lives in task_queue.h, reading the store in
// backlog_reader.h. The lock is never held across a store read or a poll callback.
#include "orchestrator/matching/matching.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fiber.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "orchestrator/matching/alarm_gate.h"
#include "orchestrator/matching/backlog_reader.h"
#include "orchestrator/matching/matching_metrics.h"
#include "orchestrator/matching/task_queue.h"

namespace kiln::orchestrator {

using matching_internal::AlarmGate;
using matching_internal::BacklogPage;
using matching_internal::BacklogSummary;
using matching_internal::MatchingMetrics;
using matching_internal::PollResult;
using matching_internal::TaskKindName;
using matching_internal::TaskQueue;
using matching_internal::Waiter;

namespace {

// While polls wait and the store still holds tasks beyond what one read brought in, the poll
// that read keeps reading for the others; this bounds how often before its Poll call returns.
constexpr int kMaxReadRoundsPerPoll = 8;

// Poll answers collected under the lock and delivered once it is released, because a callback
// may call back into Matching. Declare it before the MutexLock: locals are destroyed in
// reverse order, so the lock is released before the answers run, on every return path.
class Answers {
 public:
  Answers() = default;
  Answers(const Answers&) = delete;
  Answers& operator=(const Answers&) = delete;
  ~Answers() {
    for (auto& [callback, task] : answers_) callback(std::move(task));
  }

  void Add(Matching::PollCallback callback, std::optional<QueuedTask> task) {
    answers_.emplace_back(std::move(callback), std::move(task));
  }

 private:
  std::vector<std::pair<Matching::PollCallback, std::optional<QueuedTask>>> answers_;
};

std::string QueueName(keys::TaskKind kind, std::string_view ns, std::string_view queue) {
  // This abseil's string_view is not std::string_view: StrCat takes std::string instead.
  return absl::StrCat(TaskKindName(kind), " task queue \"", std::string(queue),
                      "\" in namespace \"", std::string(ns), "\"");
}

// When a lease lapses, for an error message: RFC 3339 in UTC, e.g. 2026-11-27T14:00:10Z.
// Rounded up to the second, so that a poll retried at that time finds the lease lapsed.
std::string FormatLeaseExpiry(absl::Time expiry) {
  const absl::Time rounded =
      absl::UnixEpoch() + absl::Ceil(expiry - absl::UnixEpoch(), absl::Seconds(1));
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", rounded, absl::UTCTimeZone());
}

}  // namespace

class Matching::Impl {
 public:
  Impl(Store* store, Clock* clock, prometheus::Registry* registry, MatchingOptions options)
      : store_(store), clock_(clock), options_(options), metrics_(registry) {}

  // Alarms may still be firing on the clock's thread: wait for them, and silence later ones.
  ~Impl() { gate_->Close(); }

  void TaskAdded(QueuedTask task);
  absl::StatusOr<PollId> Poll(keys::TaskKind kind, std::string_view ns, std::string_view queue,
                              std::string_view identity, absl::Time deadline, PollCallback callback,
                              PollOptions poll_options);
  void CancelPoll(PollId id);
  void Done(const QueuedTask& task);
  void Return(QueuedTask task);
  std::optional<Reservation> Reserve(keys::TaskKind kind, std::string_view ns,
                                     std::string_view queue, std::string_view preferred_instance);
  void Fulfil(const Reservation& reservation, QueuedTask task);
  void Release(const Reservation& reservation);
  absl::StatusOr<QueueDescription> Describe(keys::TaskKind kind, std::string_view ns,
                                            std::string_view queue);
  void Shutdown();

 private:
  struct PollEntry {
    TaskQueue* queue;
    TaskQueue::WaiterList::iterator waiter;
  };

  TaskQueue* FindQueue(keys::TaskKind kind, std::string_view ns, std::string_view queue)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TaskQueue* GetOrCreateQueue(keys::TaskKind kind, std::string_view ns, std::string_view queue)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives `task` (now in flight) to `waiter`, whose poll ends.
  void HandOut(TaskQueue* q, Waiter waiter, QueuedTask task, PollResult result, Answers* answers)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordHandOut(keys::TaskKind kind, PollResult result, const QueuedTask& task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `q`'s exclusive lease for `identity` and ends the other identities' waiting polls:
  // from now on only the holder's polls get its tasks.
  void TakeLease(TaskQueue* q, const std::string& identity, absl::Time now, Answers* answers)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a waiting poll with nullopt; false when it is no longer waiting.
  bool AnswerEmpty(PollId id, PollResult result, Answers* answers)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Notes activity on `q`; an idle queue gets an unload alarm.
  void Touch(TaskQueue* q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads `q`'s backlog from the store into waiting polls and the buffer. The caller has
  // called q->BeginScan(), which also keeps `q` from being unloaded meanwhile.
  absl::Status ReadBackIntoMemory(TaskQueue* q) ABSL_LOCKS_EXCLUDED(mu_);
  AlarmId ScheduleAlarm(absl::Time when, std::function<void()> fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return clock_->ScheduleAlarm(when, AlarmGate::Wrap(gate_, std::move(fn)));
  }
  void OnPollDeadline(PollId id) ABSL_LOCKS_EXCLUDED(mu_);
  void OnUnloadAlarm(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);

  Store* const store_;
  Clock* const clock_;
  const MatchingOptions options_;
  // Before queues_: a TaskQueue updates the gauges when it is destroyed.
  MatchingMetrics metrics_;
  const std::shared_ptr<AlarmGate> gate_ = std::make_shared<AlarmGate>();

  absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  PollId next_poll_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Keyed by keys::TaskQueuePrefix, which names (kind, namespace, queue) unambiguously. A queue
  // is erased only by its unload alarm (when idle) or with Impl, so a TaskQueue* stays valid
  // while the queue has a waiter or a store read in progress.
  absl::flat_hash_map<std::string, std::unique_ptr<TaskQueue>> queues_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<PollId, PollEntry> polls_ ABSL_GUARDED_BY(mu_);
  // Polls taken by Reserve, waiting for Fulfil or Release: their callbacks.
  absl::flat_hash_map<PollId, PollCallback> reserved_ ABSL_GUARDED_BY(mu_);
};

TaskQueue* Matching::Impl::FindQueue(keys::TaskKind kind, std::string_view ns,
                                     std::string_view queue) {
  auto it = queues_.find(keys::TaskQueuePrefix(kind, ns, queue));
  return it == queues_.end() ? nullptr : it->second.get();
}

TaskQueue* Matching::Impl::GetOrCreateQueue(keys::TaskKind kind, std::string_view ns,
                                            std::string_view queue) {
  auto [it, inserted] = queues_.try_emplace(keys::TaskQueuePrefix(kind, ns, queue));
  if (inserted) {
    it->second = std::make_unique<TaskQueue>(kind, std::string(ns), std::string(queue),
                                             options_.exclusive_lease, &metrics_);
  }
  return it->second.get();
}

void Matching::Impl::RecordHandOut(keys::TaskKind kind, PollResult result, const QueuedTask& task) {
  metrics_.RecordPollResult(kind, result);
  if (IsSet(task.record.created_time())) {
    metrics_.RecordScheduleToStart(kind, clock_->Now() - FromProto(task.record.created_time()));
  }
}

void Matching::Impl::HandOut(TaskQueue* q, Waiter waiter, QueuedTask task, PollResult result,
                             Answers* answers) {
  q->MarkInFlight(task.task_id);
  polls_.erase(waiter.poll_id);
  // False when the deadline alarm is firing right now: it will find the poll gone.
  if (waiter.alarm != 0) clock_->CancelAlarm(waiter.alarm);
  RecordHandOut(q->kind(), result, task);
  answers->Add(std::move(waiter.callback), std::move(task));
}

bool Matching::Impl::AnswerEmpty(PollId id, PollResult result, Answers* answers) {
  auto it = polls_.find(id);
  if (it == polls_.end()) return false;
  TaskQueue* q = it->second.queue;
  Waiter waiter = q->TakeWaiter(it->second.waiter, clock_->Now());
  polls_.erase(it);
  if (waiter.alarm != 0) clock_->CancelAlarm(waiter.alarm);
  metrics_.RecordPollResult(q->kind(), result);
  answers->Add(std::move(waiter.callback), std::nullopt);
  Touch(q);
  return true;
}

void Matching::Impl::Touch(TaskQueue* q) {
  const absl::Time now = clock_->Now();
  q->last_active = now;
  if (shutdown_ || !q->IsIdle() || q->unload_alarm != 0) return;
  std::string key = keys::TaskQueuePrefix(q->kind(), q->ns(), q->queue());
  q->unload_alarm = ScheduleAlarm(now + options_.idle_queue_unload,
                                  [this, key = std::move(key)] { OnUnloadAlarm(key); });
}

void Matching::Impl::OnUnloadAlarm(const std::string& key) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  auto it = queues_.find(key);
  if (it == queues_.end()) return;
  TaskQueue* q = it->second.get();
  q->unload_alarm = 0;
  // Busy again: Touch schedules a new alarm once it is idle.
  if (!q->IsIdle()) return;
  const absl::Time now = clock_->Now();
  // A live lease is kept until it lapses (Expiry is InfinitePast when none is live).
  const absl::Time due =
      std::max(q->last_active + options_.idle_queue_unload, q->lease().Expiry(now));
  if (now >= due) {
    // Its tasks, if any, are in the store; the next use starts by reading them.
    queues_.erase(it);
    return;
  }
  q->unload_alarm = ScheduleAlarm(due, [this, key] { OnUnloadAlarm(key); });
}

void Matching::Impl::TakeLease(TaskQueue* q, const std::string& identity, absl::Time now,
                               Answers* answers) {
  q->TakeLease(identity, now);
  // Their callbacks get nullopt, as for a cancel; their next polls are refused, naming the
  // holder. Tasks already handed to them stay theirs.
  for (PollId other : q->WaitersNotOf(identity)) {
    AnswerEmpty(other, PollResult::kCancelled, answers);
  }
  LogInfo("matching.exclusive_lease_taken", {{"kind", TaskKindName(q->kind())},
                                             {"namespace", q->ns()},
                                             {"queue", q->queue()},
                                             {"identity", identity}});
}

void Matching::Impl::OnPollDeadline(PollId id) {
  Answers answers;
  absl::MutexLock lock(&mu_);
  AnswerEmpty(id, PollResult::kTimeout, &answers);
}

void Matching::Impl::TaskAdded(QueuedTask task) {
  Answers answers;
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  TaskQueue* q = GetOrCreateQueue(task.kind, task.ns, task.queue);
  // Known: already buffered or handed out (e.g. read from the store before this call came).
  // Recently done: read from the store, handed out and finished before this call came.
  if (q->Knows(task.task_id) || q->RecentlyDone(task.task_id)) return;
  if (std::optional<Waiter> waiter = q->TakeFirstWaiter(clock_->Now())) {
    HandOut(q, *std::move(waiter), std::move(task), PollResult::kSyncMatch, &answers);
  } else if (q->buffered() < options_.max_buffered_tasks_per_queue) {
    q->PushBack(std::move(task));
  } else {
    // Safe in the store; it is read back once the buffer runs dry.
    q->SetStoreMayHaveMore();
  }
  Touch(q);
}

absl::StatusOr<Matching::PollId> Matching::Impl::Poll(keys::TaskKind kind, std::string_view ns,
                                                      std::string_view queue,
                                                      std::string_view identity,
                                                      absl::Time deadline, PollCallback callback,
                                                      PollOptions poll_options) {
  PollId id = 0;
  TaskQueue* q = nullptr;
  bool read_store = false;
  {
    Answers answers;
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::UnavailableError("matching is shut down; it accepts no polls");
    if (poll_options.exclusive && identity.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot poll ", QueueName(kind, ns, queue),
                       " exclusively without an identity: the lease is held in its name"));
    }
    const absl::Time now = clock_->Now();
    // Before the limits: a poll that may not use this queue at all is told so. A refused poll
    // leaves no trace (no waiter, no poller entry, no renewal).
    if (const TaskQueue* held = FindQueue(kind, ns, queue);
        held != nullptr && held->lease().HeldByOther(identity, now)) {
      return absl::FailedPreconditionError(absl::StrCat(
          QueueName(kind, ns, queue), " is held exclusively by \"", held->lease().Holder(now),
          "\" until ", FormatLeaseExpiry(held->lease().Expiry(now))));
    }
    if (polls_.size() >= options_.max_pollers_total) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot poll ", QueueName(kind, ns, queue), ": ", polls_.size(),
          " polls are waiting in all, the limit (max_pollers_total = ", options_.max_pollers_total,
          ")"));
    }
    q = GetOrCreateQueue(kind, ns, queue);
    const std::string identity_str(identity);
    // Not held by another (checked above): held by this identity, or by none.
    if (poll_options.exclusive && q->lease().Holder(now).empty()) {
      TakeLease(q, identity_str, now, &answers);
    }
    q->RenewLease(identity_str, now);
    if (q->waiter_count() >= options_.max_pollers_per_queue) {
      Touch(q);
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot poll ", QueueName(kind, ns, queue), ": ", q->waiter_count(),
                       " polls are waiting on it, the limit (max_pollers_per_queue = ",
                       options_.max_pollers_per_queue, ")"));
    }
    id = next_poll_id_++;
    q->RecordPoller(identity_str, now, options_.poller_expiry, poll_options.stream);
    if (q->buffered() > 0) {
      QueuedTask task = q->PopFront();
      RecordHandOut(kind, PollResult::kBacklog, task);
      answers.Add(std::move(callback), std::move(task));
      Touch(q);
      return id;
    }
    Waiter waiter{.poll_id = id,
                  .identity = identity_str,
                  .callback = std::move(callback),
                  .worker_instance_id = poll_options.worker_instance_id,
                  .stream = poll_options.stream};
    if (deadline > now && deadline != absl::InfiniteFuture()) {
      waiter.alarm = ScheduleAlarm(deadline, [this, id] { OnPollDeadline(id); });
    }
    polls_.emplace(id, PollEntry{q, q->AddWaiter(std::move(waiter), now)});
    // One read per queue at a time; polls arriving meanwhile wait and are served by it.
    if (q->store_may_have_more() && !q->scanning()) {
      q->BeginScan();
      read_store = true;
    }
  }
  if (read_store) {
    absl::Status status;
    {
      // Polls come holding no lock (the frontend's long polls) and mu_ is free: may park.
      fiber::ParkScope park;
      status = ReadBackIntoMemory(q);
    }
    if (!status.ok()) {
      absl::MutexLock lock(&mu_);
      auto it = polls_.find(id);
      if (it != polls_.end()) {
        // Still waiting: withdraw the poll and report the error instead (no callback).
        TaskQueue* waiting_on = it->second.queue;
        Waiter waiter = waiting_on->TakeWaiter(it->second.waiter, clock_->Now());
        polls_.erase(it);
        if (waiter.alarm != 0) clock_->CancelAlarm(waiter.alarm);
        Touch(waiting_on);
        return Annotate(status,
                        absl::StrCat("reading the backlog of ", QueueName(kind, ns, queue)));
      }
      // Already answered (a task was added meanwhile): the poll stands; the flag stays set,
      // so a later poll reads again.
      LogWarn(
          "matching.backlog_read_failed",
          {{"kind", TaskKindName(kind)}, {"namespace", ns}, {"queue", queue}, {"error", status}});
    }
  }
  // A deadline already past: answer now rather than wait for an alarm (the fake clock would
  // run it only on its next Advance).
  if (deadline <= clock_->Now()) OnPollDeadline(id);
  return id;
}

absl::Status Matching::Impl::ReadBackIntoMemory(TaskQueue* q) {
  for (int round = 1;; ++round) {
    absl::flat_hash_set<int64_t> skip;
    size_t want = 0;
    uint64_t epoch = 0;
    {
      absl::MutexLock lock(&mu_);
      skip = q->KnownIds();
      want = options_.max_buffered_tasks_per_queue + q->waiter_count();
      epoch = q->overflow_epoch();
    }
    // Kind, namespace and queue are immutable: reading them unlocked is fine.
    absl::StatusOr<BacklogPage> page =
        matching_internal::ReadBacklog(*store_, q->kind(), q->ns(), q->queue(), skip, want);

    Answers answers;
    absl::MutexLock lock(&mu_);
    if (!page.ok()) {
      q->EndScan();
      Touch(q);
      return page.status();
    }
    if (shutdown_) {
      q->EndScan();
      return absl::OkStatus();
    }
    bool dropped = false;
    for (QueuedTask& task : page->tasks) {
      // Added, returned or finished while the store was read: memory has the newer word.
      if (q->Knows(task.task_id) || q->DoneDuringScan(task.task_id)) continue;
      if (std::optional<Waiter> waiter = q->TakeFirstWaiter(clock_->Now())) {
        HandOut(q, *std::move(waiter), std::move(task), PollResult::kBacklog, &answers);
      } else if (q->buffered() < options_.max_buffered_tasks_per_queue) {
        q->PushBack(std::move(task));
      } else {
        dropped = true;  // The buffer filled meanwhile; it stays in the store.
      }
    }
    // Everything is in memory unless the read stopped early, dropped some, or a TaskAdded
    // dropped one while the read ran (its entry may be past the read's snapshot).
    if (page->reached_end && !dropped && q->overflow_epoch() == epoch) {
      q->ClearStoreMayHaveMore();
    }
    if (q->store_may_have_more() && q->has_waiters() && round < kMaxReadRoundsPerPoll) {
      continue;  // Releases the lock and delivers this round's answers first.
    }
    q->EndScan();
    Touch(q);
    return absl::OkStatus();
  }
}

void Matching::Impl::CancelPoll(PollId id) {
  Answers answers;
  absl::MutexLock lock(&mu_);
  AnswerEmpty(id, PollResult::kCancelled, &answers);
}

void Matching::Impl::Done(const QueuedTask& task) {
  absl::MutexLock lock(&mu_);
  TaskQueue* q = FindQueue(task.kind, task.ns, task.queue);
  if (q == nullptr) return;  // Nothing of this queue is in memory.
  q->MarkDone(task.task_id);
  Touch(q);
}

void Matching::Impl::Return(QueuedTask task) {
  Answers answers;
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;  // Its entry is in the store; the next start reads it.
  TaskQueue* q = GetOrCreateQueue(task.kind, task.ns, task.queue);
  if (q->IsBuffered(task.task_id)) return;  // Already available (returned twice).
  if (std::optional<Waiter> waiter = q->TakeFirstWaiter(clock_->Now())) {
    HandOut(q, *std::move(waiter), std::move(task), PollResult::kBacklog, &answers);
  } else if (q->buffered() < options_.max_buffered_tasks_per_queue) {
    q->PushFront(std::move(task));
  } else if (q->EvictBack()) {
    // Full: the returned task is first in line, the last buffered one goes back to the store.
    q->SetStoreMayHaveMore();
    q->PushFront(std::move(task));
  } else {
    // No buffer at all (a cap of 0): the store has it.
    q->Forget(task.task_id);
    q->SetStoreMayHaveMore();
  }
  Touch(q);
}

std::optional<Matching::Reservation> Matching::Impl::Reserve(keys::TaskKind kind,
                                                             std::string_view ns,
                                                             std::string_view queue,
                                                             std::string_view preferred_instance) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return std::nullopt;
  TaskQueue* q = FindQueue(kind, ns, queue);
  if (q == nullptr || !q->has_waiters() || q->buffered() > 0 || q->store_may_have_more() ||
      q->scanning()) {
    return std::nullopt;
  }
  std::optional<Waiter> waiter = q->TakeFirstWaiter(clock_->Now(), preferred_instance);
  if (!waiter.has_value()) return std::nullopt;
  polls_.erase(waiter->poll_id);
  // False when the deadline alarm is firing right now: it will find the poll gone.
  if (waiter->alarm != 0) clock_->CancelAlarm(waiter->alarm);
  reserved_.emplace(waiter->poll_id, std::move(waiter->callback));
  Touch(q);
  return Reservation{.poll_id = waiter->poll_id,
                     .identity = std::move(waiter->identity),
                     .worker_instance_id = std::move(waiter->worker_instance_id),
                     .kind = kind,
                     .ns = std::string(ns),
                     .queue = std::string(queue)};
}

void Matching::Impl::Fulfil(const Reservation& reservation, QueuedTask task) {
  Answers answers;
  absl::MutexLock lock(&mu_);
  auto it = reserved_.find(reservation.poll_id);
  if (it == reserved_.end()) return;  // Answered by Shutdown.
  PollCallback callback = std::move(it->second);
  reserved_.erase(it);
  if (shutdown_) {
    answers.Add(std::move(callback), std::nullopt);
    return;
  }
  TaskQueue* q = GetOrCreateQueue(reservation.kind, reservation.ns, reservation.queue);
  q->MarkInFlight(task.task_id);
  RecordHandOut(q->kind(), PollResult::kSyncMatch, task);
  answers.Add(std::move(callback), std::move(task));
}

void Matching::Impl::Release(const Reservation& reservation) {
  Answers answers;
  absl::MutexLock lock(&mu_);
  auto it = reserved_.find(reservation.poll_id);
  if (it == reserved_.end()) return;
  answers.Add(std::move(it->second), std::nullopt);
  reserved_.erase(it);
}

absl::StatusOr<QueueDescription> Matching::Impl::Describe(keys::TaskKind kind, std::string_view ns,
                                                          std::string_view queue) {
  absl::StatusOr<BacklogSummary> summarized;
  {
    fiber::ParkScope park;  // Called holding no lock (DescribeTaskQueue): the scan may park.
    summarized =
        matching_internal::SummarizeBacklog(*store_, kind, ns, queue, options_.max_describe_scan);
  }
  ASSIGN_OR_RETURN(BacklogSummary summary, std::move(summarized));
  QueueDescription description;
  description.backlog_count = summary.count;
  description.backlog_count_capped = summary.capped;
  description.oldest_task_created = summary.oldest_created;
  absl::MutexLock lock(&mu_);
  if (TaskQueue* q = FindQueue(kind, ns, queue)) {
    const absl::Time now = clock_->Now();
    description.pollers = q->LivePollers(now, options_.poller_expiry);
    description.exclusive_holder = q->lease().Holder(now);
    description.exclusive_lease_expiry = q->lease().Expiry(now);
  }
  return description;
}

void Matching::Impl::Shutdown() {
  Answers answers;
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  shutdown_ = true;
  const absl::Time now = clock_->Now();
  for (auto& [key, q] : queues_) {
    while (std::optional<Waiter> waiter = q->TakeFirstWaiter(now)) {
      if (waiter->alarm != 0) clock_->CancelAlarm(waiter->alarm);
      metrics_.RecordPollResult(q->kind(), PollResult::kCancelled);
      answers.Add(std::move(waiter->callback), std::nullopt);
    }
    if (q->unload_alarm != 0) {
      clock_->CancelAlarm(q->unload_alarm);
      q->unload_alarm = 0;
    }
  }
  polls_.clear();
  // Their tasks, started meanwhile, time out and are retried like any task lost with a poller.
  for (auto& [id, callback] : reserved_) answers.Add(std::move(callback), std::nullopt);
  reserved_.clear();
}

Matching::Matching(Store* store, Clock* clock, prometheus::Registry* registry,
                   MatchingOptions options)
    : impl_(std::make_unique<Impl>(store, clock, registry, options)) {}

Matching::~Matching() {
  impl_->Shutdown();
  impl_.reset();
}

void Matching::TaskAdded(QueuedTask task) { impl_->TaskAdded(std::move(task)); }

absl::StatusOr<Matching::PollId> Matching::Poll(keys::TaskKind kind, std::string_view ns,
                                                std::string_view queue, std::string_view identity,
                                                absl::Time deadline, PollCallback callback,
                                                PollOptions options) {
  return impl_->Poll(kind, ns, queue, identity, deadline, std::move(callback), options);
}

void Matching::CancelPoll(PollId id) { impl_->CancelPoll(id); }

void Matching::Done(const QueuedTask& task) { impl_->Done(task); }

void Matching::Return(QueuedTask task) { impl_->Return(std::move(task)); }

std::optional<Matching::Reservation> Matching::Reserve(keys::TaskKind kind, std::string_view ns,
                                                       std::string_view queue,
                                                       std::string_view preferred_instance) {
  return impl_->Reserve(kind, ns, queue, preferred_instance);
}

void Matching::Fulfil(const Reservation& reservation, QueuedTask task) {
  impl_->Fulfil(reservation, std::move(task));
}

void Matching::Release(const Reservation& reservation) { impl_->Release(reservation); }

absl::StatusOr<QueueDescription> Matching::Describe(keys::TaskKind kind, std::string_view ns,
                                                    std::string_view queue) {
  return impl_->Describe(kind, ns, queue);
}

void Matching::Shutdown() { impl_->Shutdown(); }

}  // namespace kiln::orchestrator
