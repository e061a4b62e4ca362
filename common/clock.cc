#include "common/clock.h"

namespace kiln {

AlarmId AlarmQueue::Add(absl::Time when, std::function<void()> callback) {
  AlarmId id = next_id_++;
  alarms_.emplace(std::make_pair(when, id), std::move(callback));
  when_.emplace(id, when);
  return id;
}

bool AlarmQueue::Cancel(AlarmId id) {
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  alarms_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

absl::Time AlarmQueue::Earliest() const {
  return alarms_.empty() ? absl::InfiniteFuture() : alarms_.begin()->first.first;
}

bool AlarmQueue::PopDue(absl::Time now, absl::Time* when, std::function<void()>* callback) {
  if (alarms_.empty() || alarms_.begin()->first.first > now) return false;
  auto node = alarms_.extract(alarms_.begin());
  when_.erase(node.key().second);
  *when = node.key().first;
  *callback = std::move(node.mapped());
  return true;
}

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
  return alarms_.Add(when, std::move(callback));
}

bool RealClock::CancelAlarm(AlarmId id) {
  absl::MutexLock lock(&mu_);
  return alarms_.Cancel(id);
}

RealClock* RealClock::Default() {
  static RealClock* clock = new RealClock();  // Never destroyed: used until exit.
  return clock;
}

void RealClock::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time first = alarms_.Earliest();
    absl::Time next = alarms_.empty() ? absl::Now() + absl::Seconds(1) : first;
    // Wake when the earliest alarm is due, when an earlier one is added, or on stop.
    auto changed = [this, first]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || alarms_.Earliest() < first;
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), next);
    if (stop_) break;
    absl::Time when;
    std::function<void()> callback;
    while (alarms_.PopDue(absl::Now(), &when, &callback)) {
      mu_.Unlock();
      callback();
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
  return alarms_.Add(when, std::move(callback));
}

bool FakeClock::CancelAlarm(AlarmId id) {
  absl::MutexLock lock(&mu_);
  return alarms_.Cancel(id);
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
      absl::Time when;
      if (!alarms_.PopDue(target, &when, &callback)) {
        if (target > now_) now_ = target;
        return;
      }
      if (when > now_) now_ = when;  // Each alarm sees the clock at its own time.
    }
    callback();
  }
}

absl::Time FakeClock::NextAlarmTime() {
  absl::MutexLock lock(&mu_);
  return alarms_.Earliest();
}

size_t FakeClock::PendingAlarms() {
  absl::MutexLock lock(&mu_);
  return alarms_.size();
}

}  // namespace kiln
