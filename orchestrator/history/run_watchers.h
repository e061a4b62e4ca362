// Waiters for a run's history to change: the long poll behind GetWorkflowExecutionHistory with
// wait_new_event (how a client waits for a result). A watcher is a callback, not a thread;
// Notify runs and forgets the run's watchers it concerns. A watcher may care only about the
// run closing (a client waiting for the result): the run's other transitions leave it waiting
// instead of waking it to read and wait again. Bounded: past the limit Watch refuses.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kiln::orchestrator {

class RunWatchers {
 public:
  explicit RunWatchers(size_t max_watchers = 50'000) : max_watchers_(max_watchers) {}

  // `callback` runs once, on the notifying thread (never under this object's lock), unless
  // cancelled first.
  absl::StatusOr<uint64_t> Watch(const std::string& run_id, std::function<void()> callback,
                                 bool close_only = false);
  // True when the watcher was removed before it ran.
  bool Cancel(uint64_t id);
  // The run's history grew; `closed`: it closed (every watcher runs, close-only ones too).
  void Notify(const std::string& run_id, bool closed = true);
  // Runs every watcher (at shutdown, so waiting calls answer).
  void NotifyAll();
  size_t size();

 private:
  const size_t max_watchers_;
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  struct Watcher {
    std::function<void()> callback;
    bool close_only = false;
  };
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint64_t, Watcher>> by_run_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> run_of_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
