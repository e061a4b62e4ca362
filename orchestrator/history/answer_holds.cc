#include "orchestrator/history/answer_holds.h"

namespace kiln::orchestrator {

AnswerHolds::AnswerHolds(prometheus::Registry* registry) {
  if (registry != nullptr) {
    auto& family = prometheus::BuildCounter()
                       .Name("kiln_engine_commit_holds_total")
                       .Help(
                           "Commits held for their workflow task's answer, by outcome: joined "
                           "(one write committed both) or missed (the answer came too late)")
                       .Register(*registry);
    joined_counter_ = &family.Add({{"outcome", "joined"}});
    missed_counter_ = &family.Add({{"outcome", "missed"}});
  }
  deadline_thread_ = std::thread([this] { Deadlines(); });
}

AnswerHolds::~AnswerHolds() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    deadlines_changed_.Signal();
  }
  deadline_thread_.join();
}

bool AnswerHolds::Open(Holder* holder, const std::string& run_id, int64_t scheduled_event_id,
                       RunCache::Handle* handle) {
  holder->run_id_ = run_id;
  holder->scheduled_event_id_ = scheduled_event_id;
  holder->handle_ = handle;
  absl::MutexLock lock(&mu_);
  if (stopping_ || !holders_.emplace(run_id, holder).second) return false;
  open_.fetch_add(1, std::memory_order_release);
  return true;
}

bool AnswerHolds::Wait(Holder* holder, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  holder->waiting_ = true;
  if (holder->taker_ != nullptr) holder->taker_->Notify();
  if (!holder->ended_) {
    holder->at_ = deadlines_.emplace(deadline, holder);
    holder->has_deadline_ = true;
    if (holder->at_ == deadlines_.begin()) deadlines_changed_.Signal();
  }
  {
    // Woken at the deadline, or once the answer that took the run has given it back. The
    // caller holds fiber::Mutexes only (the run's lock).
    fiber::ParkScope park;
    holder->woken_.Wait(&mu_);
  }
  // Taken, Take erased it already.
  if (!holder->taken_) {
    holders_.erase(holder->run_id_);
    open_.fetch_sub(1, std::memory_order_relaxed);
  }
  const bool joined = holder->taken_;
  (joined ? joined_ : missed_).fetch_add(1, std::memory_order_relaxed);
  if (prometheus::Counter* counter = joined ? joined_counter_ : missed_counter_) {
    counter->Increment();
  }
  return joined;
}

AnswerHolds::Holder* AnswerHolds::Take(const std::string& run_id, int64_t scheduled_event_id) {
  // A holder opens before its task goes out, so its answer, which comes after, sees it counted.
  if (open_.load(std::memory_order_acquire) == 0) return nullptr;
  absl::MutexLock lock(&mu_);
  auto it = holders_.find(run_id);
  if (it == holders_.end()) return nullptr;
  Holder* holder = it->second;
  if (holder->ended_ || holder->scheduled_event_id_ != scheduled_event_id) return nullptr;
  if (holder->has_deadline_) deadlines_.erase(holder->at_);
  holder->has_deadline_ = false;
  holder->ended_ = true;
  holder->taken_ = true;
  holders_.erase(it);
  open_.fetch_sub(1, std::memory_order_relaxed);
  if (!holder->waiting_) {
    // Its task went out a moment ago and the holder is not done with the run yet.
    fiber::Waiter ready;
    holder->taker_ = &ready;
    fiber::ParkScope park;  // the engine is entered holding no absl::Mutex
    ready.Wait(&mu_);
  }
  return holder;
}

void AnswerHolds::Return(Holder* holder) {
  absl::MutexLock lock(&mu_);
  holder->woken_.Notify();
}

void AnswerHolds::EndDeadline(Holder* holder) {
  deadlines_.erase(holder->at_);
  holder->has_deadline_ = false;
  holder->ended_ = true;
  holder->woken_.Notify();
}

void AnswerHolds::Deadlines() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Stopping: every hold waiting for its deadline ends now (none may start).
    const absl::Time now = stopping_ ? absl::InfiniteFuture() : absl::Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      EndDeadline(deadlines_.begin()->second);
    }
    if (stopping_) return;
    if (deadlines_.empty()) {
      deadlines_changed_.Wait(&mu_);
    } else {
      deadlines_changed_.WaitWithDeadline(&mu_, deadlines_.begin()->first);
    }
  }
}

}  // namespace kiln::orchestrator
