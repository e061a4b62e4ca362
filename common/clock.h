// The injected clock. Everything in Kiln that reads time or waits for a time does it through a
// Clock, so tests and simulations drive time with a FakeClock instead of sleeping.
//
// Besides Now(), a clock runs alarms: a callback to run once the clock reaches a time. The real
// clock runs them on one background thread (so a million pending long-poll deadlines cost a
// heap entry each, not a thread); the fake clock runs them inside Advance(), in time order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln {

using AlarmId = uint64_t;

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() = 0;

  // Runs `callback` once Now() >= `when`. The callback must not block for long: it runs on the
  // clock's own thread (or inside FakeClock::Advance). Never returns 0.
  virtual AlarmId ScheduleAlarm(absl::Time when, std::function<void()> callback) = 0;

  // Cancels a pending alarm. Returns false when it already ran (or is running) or is unknown.
  virtual bool CancelAlarm(AlarmId id) = 0;
};

// Pending alarms ordered by (time, id), so alarms due at the same time run in scheduling order.
// Not synchronised: each clock guards its own.
class AlarmQueue {
 public:
  AlarmId Add(absl::Time when, std::function<void()> callback);
  bool Cancel(AlarmId id);
  bool empty() const { return alarms_.empty(); }
  size_t size() const { return alarms_.size(); }
  // The earliest alarm's time, or InfiniteFuture().
  absl::Time Earliest() const;
  // Removes and returns the earliest alarm if it is due at `now`.
  bool PopDue(absl::Time now, absl::Time* when, std::function<void()>* callback);

 private:
  std::map<std::pair<absl::Time, AlarmId>, std::function<void()>> alarms_;
  std::map<AlarmId, absl::Time> when_;
  AlarmId next_id_ = 1;
};

// The wall clock, with a lazily started alarm thread.
class RealClock final : public Clock {
 public:
  RealClock();
  ~RealClock() override;
  RealClock(const RealClock&) = delete;
  RealClock& operator=(const RealClock&) = delete;

  absl::Time Now() override;
  AlarmId ScheduleAlarm(absl::Time when, std::function<void()> callback) override;
  bool CancelAlarm(AlarmId id) override;

  // A process-wide instance for code that has no injected clock (main()s).
  static RealClock* Default();

 private:
  void Loop();

  absl::Mutex mu_;
  AlarmQueue alarms_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// A clock that moves only when told. Advance() runs every alarm that falls due, in time order,
// with Now() set to each alarm's time as it runs.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));

  absl::Time Now() override;
  AlarmId ScheduleAlarm(absl::Time when, std::function<void()> callback) override;
  bool CancelAlarm(AlarmId id) override;

  // Moves time forward by `d`, running the alarms that fall due. Alarms scheduled by those
  // alarms run too if they fall inside the window.
  void Advance(absl::Duration d);
  void AdvanceTo(absl::Time t);

  // The time of the earliest pending alarm, or InfiniteFuture().
  absl::Time NextAlarmTime();
  size_t PendingAlarms();

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  AlarmQueue alarms_ ABSL_GUARDED_BY(mu_);
  // Serialises Advance calls so alarms never run concurrently.
  absl::Mutex advance_mu_;
};

}  // namespace kiln
