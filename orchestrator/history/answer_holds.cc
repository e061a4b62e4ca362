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

bool AnswerHolds::Open(Holder* holder, const std::string& run_id, int64_t scheduled_event_id) {
  holder->run_id = run_id;
  holder->scheduled_event_id = scheduled_event_id;
  absl::MutexLock lock(&mu_);
  return !stopping_ && holders_.emplace(run_id, holder).second;
}

AnswerHolds::Posted* AnswerHolds::Wait(Holder* holder, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!holder->ended) {
    holder->at = deadlines_.emplace(deadline, holder);
    holder->has_deadline = true;
    if (holder->at == deadlines_.begin()) deadlines_changed_.Signal();
    fiber::ParkScope park;  // the caller holds fiber::Mutexes only (the run's lock)
    holder->woken.Wait(&mu_);
  }
  holders_.erase(holder->run_id);
  const bool joined = holder->posted != nullptr;
  (joined ? joined_ : missed_).fetch_add(1, std::memory_order_relaxed);
  if (prometheus::Counter* counter = joined ? joined_counter_ : missed_counter_)
    counter->Increment();
  return holder->posted;
}

void AnswerHolds::End(Holder* holder, Posted* posted) {
  if (holder->has_deadline) deadlines_.erase(holder->at);
  holder->has_deadline = false;
  holder->ended = true;
  holder->posted = posted;
  holder->woken.Notify();
}

void AnswerHolds::Finish(Posted* posted) {
  absl::MutexLock lock(&mu_);
  posted->ran_.Notify();
}

bool AnswerHolds::Post(const std::string& run_id, int64_t scheduled_event_id,
                       absl::FunctionRef<void(RunCache::Handle&)> body) {
  Posted posted(body);
  absl::MutexLock lock(&mu_);
  auto it = holders_.find(run_id);
  if (it == holders_.end() || it->second->ended ||
      it->second->scheduled_event_id != scheduled_event_id) {
    return false;
  }
  End(it->second, &posted);
  fiber::ParkScope park;  // the engine is entered holding no absl::Mutex
  posted.ran_.Wait(&mu_);
  return true;
}

void AnswerHolds::Deadlines() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Stopping: every hold ends now (none may start).
    const absl::Time now = stopping_ ? absl::InfiniteFuture() : absl::Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      End(deadlines_.begin()->second, nullptr);
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
