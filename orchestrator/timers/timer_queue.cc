#include "orchestrator/timers/timer_queue.h"

#include "common/fiber.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {

TimerQueue::TimerQueue(Store* store, Clock* clock, Executor* executor, FireFn fire,
                       prometheus::Registry* registry, TimerQueueOptions options)
    : store_(store), clock_(clock), executor_(executor), fire_(std::move(fire)), options_(options) {
  if (registry != nullptr) {
    auto& counters = prometheus::BuildCounter()
                         .Name("kiln_timers_fired_total")
                         .Help("Durable timers fired, by outcome")
                         .Register(*registry);
    fired_ = &counters.Add({{"queue", options_.name}, {"result", "ok"}});
    fire_errors_ = &counters.Add({{"queue", options_.name}, {"result", "error"}});
    in_memory_gauge_ = &prometheus::BuildGauge()
                            .Name("kiln_timers_in_memory")
                            .Help("Durable timers loaded in memory")
                            .Register(*registry)
                            .Add({{"queue", options_.name}});
  }
}

TimerQueue::~TimerQueue() { Stop(); }

absl::Status TimerQueue::Start() {
  absl::MutexLock lock(&mu_);
  running_ = true;
  absl::Status status = LoadLocked();
  ArmLocked();
  return status;
}

void TimerQueue::Stop() {
  absl::MutexLock lock(&mu_);
  if (!running_) return;
  running_ = false;
  if (alarm_ != 0) clock_->CancelAlarm(alarm_);
  alarm_ = 0;
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_.empty(); };
  mu_.Await(absl::Condition(&drained));
}

size_t TimerQueue::in_memory() {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

void TimerQueue::TimerAdded(const std::string& key, absl::Time fire_time) {
  absl::MutexLock lock(&mu_);
  if (!running_ || key >= loaded_until_) return;  // The store has it; a later load reads it.
  if (pending_.size() >= options_.max_in_memory) {
    // No room: shrink the loaded range so that a later load reads this one.
    loaded_until_ = key;
    loaded_until_time_ = fire_time;
    return;
  }
  if (in_flight_.count(key) == 0) pending_.emplace(key, fire_time);
  if (in_memory_gauge_) in_memory_gauge_->Set(static_cast<double>(pending_.size()));
  ArmLocked();
}

void TimerQueue::TimerRemoved(const std::string& key) {
  absl::MutexLock lock(&mu_);
  if (pending_.erase(key) > 0 && in_memory_gauge_) {
    in_memory_gauge_->Set(static_cast<double>(pending_.size()));
  }
}

absl::Status TimerQueue::LoadLocked() {
  if (pending_.size() >= options_.max_in_memory) return absl::OkStatus();
  absl::Time horizon = clock_->Now() + options_.window;
  std::string end = keys::Timer(horizon, 0);
  if (loaded_until_ >= end) return absl::OkStatus();
  size_t room = options_.max_in_memory - pending_.size();
  size_t seen = 0;
  std::string last;
  absl::Status status = store_->Scan(options_.table, loaded_until_, end, room,
                                     [&](std::string_view key, std::string_view) {
                                       ++seen;
                                       last = std::string(key);
                                       if (in_flight_.count(last) == 0) {
                                         pending_.emplace(last, keys::TimerFireTime(key));
                                       }
                                       return true;
                                     });
  if (!status.ok()) return status;
  if (seen < room) {
    loaded_until_ = end;
    loaded_until_time_ = horizon;
  } else {
    loaded_until_ = last + '\0';
    loaded_until_time_ = keys::TimerFireTime(last);
  }
  if (in_memory_gauge_) in_memory_gauge_->Set(static_cast<double>(pending_.size()));
  return absl::OkStatus();
}

void TimerQueue::ArmLocked() {
  if (!running_) return;
  // Wake for the earliest timer, or when the loaded window needs extending.
  absl::Time next = loaded_until_time_;
  if (!pending_.empty()) next = std::min(next, pending_.begin()->second);
  if (alarm_ != 0 && next >= alarm_time_) return;
  if (alarm_ != 0) clock_->CancelAlarm(alarm_);
  alarm_time_ = next;
  alarm_ = clock_->ScheduleAlarm(next, [this] { OnAlarm(); });
}

void TimerQueue::OnAlarm() {
  std::vector<std::string> due;
  {
    absl::MutexLock lock(&mu_);
    alarm_ = 0;
    alarm_time_ = absl::InfiniteFuture();
    if (!running_) return;
    absl::Time now = clock_->Now();
    if (loaded_until_time_ <= now || pending_.empty()) {
      absl::Status status = LoadLocked();
      if (!status.ok()) {
        LogError("timers.load_failed", {{"status", status}});
        loaded_until_time_ = now + options_.retry_delay;  // Try again shortly.
      }
    }
    while (!pending_.empty() && pending_.begin()->second <= now &&
           in_flight_.size() < options_.max_in_flight) {
      auto node = pending_.extract(pending_.begin());
      in_flight_.insert(node.key());
      due.push_back(std::move(node.key()));
    }
    if (in_memory_gauge_) in_memory_gauge_->Set(static_cast<double>(pending_.size()));
    ArmLocked();
  }
  for (std::string& key : due) {
    std::string copy = key;
    if (!executor_->TrySubmit([this, copy] { Fire(copy); })) {
      absl::MutexLock lock(&mu_);
      in_flight_.erase(key);
      pending_.emplace(key, clock_->Now() + options_.retry_delay);
      ArmLocked();
    }
  }
}

void TimerQueue::Fire(const std::string& key) {
  absl::Status status;
  absl::StatusOr<std::optional<std::string>> stored;
  {
    fiber::ParkScope park;  // Run on the executor holding no lock: the read may park.
    stored = store_->Get(options_.table, key);
  }
  if (!stored.ok()) {
    status = stored.status();
  } else if (stored->has_value()) {
    kiln::internal::v1::TimerTask task;
    if (!task.ParseFromString(**stored)) {
      status = absl::DataLossError("timer task is corrupt");
    } else {
      status = fire_(key, task);
    }
  }  // else: deleted since (a cancelled timer, a closed run): nothing to do.
  absl::MutexLock lock(&mu_);
  in_flight_.erase(key);
  if (status.ok()) {
    if (fired_) fired_->Increment();
    if (failing_) {
      LogInfo("timers.fire_recovered", {{"failures_unlogged", failures_unlogged_}});
      failing_ = false;
      failures_unlogged_ = 0;
    }
  } else {
    if (fire_errors_) fire_errors_->Increment();
    failing_ = true;
    constexpr absl::Duration kFailureLogInterval = absl::Seconds(10);
    const absl::Time now = clock_->Now();
    if (now - last_failure_log_ >= kFailureLogInterval) {
      LogWarn("timers.fire_failed",
              {{"status", status}, {"failures_unlogged", failures_unlogged_}});
      last_failure_log_ = now;
      failures_unlogged_ = 0;
    } else {
      ++failures_unlogged_;
    }
    if (running_ && !absl::IsDataLoss(status)) {
      pending_.emplace(key, clock_->Now() + options_.retry_delay);
    }
  }
  ArmLocked();
}

}  // namespace kiln::orchestrator
