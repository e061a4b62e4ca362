#include "common/clock.h"

namespace kiln {

RealClock::RealClock() : thread_([this] { Loop(); }) {}

RealClock::~RealClock() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::Time RealClock::Now() { return absl::Now(); }

AlarmId RealClock::ScheduleAlarm(absl::Time when, std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  AlarmId id = next_id_++;
  alarms_.emplace(std::make_pair(when, id), std::move(callback));
  when_.emplace(id, when);
  return id;
}

bool RealClock::CancelAlarm(AlarmId id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  alarms_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

RealClock* RealClock::Default() {
  static RealClock* clock = new RealClock();  // Never destroyed: used until exit.
  return clock;
}

void RealClock::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time next =
        alarms_.empty() ? absl::Now() + absl::Seconds(1) : alarms_.begin()->first.first;
    // Wake when the earliest alarm is due, when an earlier one is added, or on stop.
    absl::Time first_key = alarms_.empty() ? absl::InfiniteFuture() : alarms_.begin()->first.first;
    auto changed = [this, first_key]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || (!alarms_.empty() && alarms_.begin()->first.first < first_key);
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), next);
    if (stop_) break;
    absl::Time now = absl::Now();
    while (!alarms_.empty() && alarms_.begin()->first.first <= now) {
      auto node = alarms_.extract(alarms_.begin());
      when_.erase(node.key().second);
      mu_.Unlock();
      node.mapped()();
      mu_.Lock();
    }
  }
}

FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

AlarmId FakeClock::ScheduleAlarm(absl::Time when, std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  AlarmId id = next_id_++;
  alarms_.emplace(std::make_pair(when, id), std::move(callback));
  when_.emplace(id, when);
  return id;
}

bool FakeClock::CancelAlarm(AlarmId id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  alarms_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

void FakeClock::Advance(absl::Duration d) {
  absl::Time target;
  {
    absl::MutexLock lock(&mu_);
    target = now_ + d;
  }
  AdvanceTo(target);
}

void FakeClock::AdvanceTo(absl::Time target) {
  absl::MutexLock advance(&advance_mu_);
  for (;;) {
    std::function<void()> callback;
    {
      absl::MutexLock lock(&mu_);
      if (alarms_.empty() || alarms_.begin()->first.first > target) {
        if (target > now_) now_ = target;
        return;
      }
      auto node = alarms_.extract(alarms_.begin());
      when_.erase(node.key().second);
      if (node.key().first > now_) now_ = node.key().first;
      callback = std::move(node.mapped());
    }
    callback();
  }
}

absl::Time FakeClock::NextAlarmTime() {
  absl::MutexLock lock(&mu_);
  return alarms_.empty() ? absl::InfiniteFuture() : alarms_.begin()->first.first;
}

size_t FakeClock::PendingAlarms() {
  absl::MutexLock lock(&mu_);
  return alarms_.size();
}

}  // namespace kiln
