// AlarmGate: lets clock alarms call into an object that may be destroyed while one is firing.
//
// Clock::CancelAlarm returns false once an alarm has been taken off the clock's queue to run,
// and the clock gives no way to wait for it: without a gate, the owner's destructor could
// finish while the alarm thread is about to call into it. A wrapped alarm holds only a weak
// reference to the gate and runs under the gate's reader lock; Close() takes the writer lock,
// so it returns only once no wrapped alarm is running, and every later one does nothing.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln::orchestrator::matching_internal {

class AlarmGate {
 public:
  // `fn` for Clock::ScheduleAlarm: runs only while `gate` is open. `fn` must not Close the
  // gate it runs under (it would wait for itself).
  static std::function<void()> Wrap(const std::shared_ptr<AlarmGate>& gate,
                                    std::function<void()> fn) {
    return [weak = std::weak_ptr<AlarmGate>(gate), fn = std::move(fn)] {
      std::shared_ptr<AlarmGate> open_gate = weak.lock();
      if (open_gate == nullptr) return;
      absl::ReaderMutexLock lock(&open_gate->mu_);
      if (!open_gate->open_) return;
      fn();
    };
  }

  // Waits for running alarms to finish; wrapped alarms that fire later do nothing.
  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace kiln::orchestrator::matching_internal
