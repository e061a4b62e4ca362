// The durable timer queue. Timer tasks live in a table (Table::kTimers; Table::kRetention for
// the second queue, which deletes closed runs) keyed by (fire time, task id), so a scan is in
// fire order. It is in truth a durable task queue: kTimers also carries the transfer tasks a
// transition implies (start a child, notify a parent, signal or cancel another run), written
// due "now" so that a crash cannot lose them (see internal::TimerTask).
//
// The queue keeps in memory only the timers due within a window (and
// at most a bounded number of them); later ones stay in the store until the window reaches
// them. One clock alarm is armed for the earliest timer; due timers are fired on an executor.
//
// Invariant: every stored timer whose key is below loaded_until_ is in memory, in flight, or
// already fired. A timer added after a commit joins memory only if it falls below that bound.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/executor.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

struct TimerQueueOptions {
  // The table the timers live in (kTimers, or kRetention for history deletions), and the
  // queue's name in metrics (label queue).
  Table table = Table::kTimers;
  std::string name = "timers";
  // How far ahead timers are loaded into memory.
  absl::Duration window = absl::Minutes(1);
  // Timers held in memory at most; the rest are read when room frees up.
  size_t max_in_memory = 10'000;
  // Timers being fired at once at most.
  size_t max_in_flight = 256;
  // Delay before retrying a timer whose firing failed.
  absl::Duration retry_delay = absl::Seconds(1);
};

class TimerQueue {
 public:
  // Fires a due timer; OK means the timer is dealt with (fired or found stale, key deleted).
  using FireFn =
      std::function<absl::Status(const std::string& key, const kiln::internal::v1::TimerTask&)>;

  TimerQueue(Store* store, Clock* clock, Executor* executor, FireFn fire,
             prometheus::Registry* registry, TimerQueueOptions options = {});
  ~TimerQueue();

  // Loads the first window and arms the alarm.
  absl::Status Start();
  // Stops firing; waits for in-flight fires to finish.
  void Stop();

  // A timer task was committed at `key`.
  void TimerAdded(const std::string& key, absl::Time fire_time);
  // The timer at `key` was deleted by a commit: it is forgotten (one already firing finds its
  // run moved on and is dropped as stale).
  void TimerRemoved(const std::string& key);

  size_t in_memory();

 private:
  void OnAlarm();
  // Reads more timers from the store into memory.
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fire(const std::string& key);

  Store* store_;
  Clock* clock_;
  Executor* executor_;
  FireFn fire_;
  TimerQueueOptions options_;

  absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  std::string loaded_until_ ABSL_GUARDED_BY(mu_);
  absl::Time loaded_until_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Key -> fire time (the key orders by fire time).
  std::map<std::string, absl::Time> pending_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  // Failed firings are logged at most every kFailureLogInterval (a store refusing writes fails
  // every retry), with the count since the last line; the first success after says so.
  int64_t failures_unlogged_ ABSL_GUARDED_BY(mu_) = 0;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_failure_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  AlarmId alarm_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time alarm_time_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();

  prometheus::Counter* fired_ = nullptr;
  prometheus::Counter* fire_errors_ = nullptr;
  prometheus::Gauge* in_memory_gauge_ = nullptr;
};

}  // namespace kiln::orchestrator
