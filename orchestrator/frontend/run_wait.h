// What the two calls that wait on a run share (GetWorkflowExecutionHistory's long poll and
// StartWorkflowExecution's wait for the close): a reactor holding at most one run watcher and
// one deadline alarm at a time, each with a reference of its own, cancelled when the call ends.
#pragma once

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "orchestrator/frontend/frontend_deps.h"
#include "orchestrator/rpc/reactor.h"

namespace kiln::orchestrator {

class RunWaitReactor : public RefCountedReactor {
 protected:
  explicit RunWaitReactor(const FrontendDeps& deps) : deps_(deps) {}

  // The watcher registered as `id` (its callback holds a reference).
  void SetWatch(uint64_t id) {
    absl::MutexLock lock(&mu_);
    watch_id_ = id;
  }
  // In the watcher's callback: it has fired, there is nothing to cancel.
  void WatchFired() {
    absl::MutexLock lock(&mu_);
    watch_id_ = 0;
  }
  // Cancels the watcher unless it fired; a cancelled one's reference is dropped here.
  void CancelWatch() {
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      id = watch_id_;
      watch_id_ = 0;
    }
    if (id != 0 && deps_.watchers->Cancel(id)) Unref();
  }
  // Cancels the alarm unless it fired; a cancelled one's reference is dropped here. alarm_
  // keeps its id, so that no new alarm is set once the call has ended.
  void CancelAlarm() {
    AlarmId alarm;
    {
      absl::MutexLock lock(&mu_);
      alarm = alarm_;
    }
    if (alarm != 0 && deps_.clock->CancelAlarm(alarm)) Unref();
  }

  const FrontendDeps& deps_;
  absl::Mutex mu_;
  uint64_t watch_id_ ABSL_GUARDED_BY(mu_) = 0;
  AlarmId alarm_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::orchestrator
