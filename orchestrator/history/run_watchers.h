// Waiters for a run's history to change: the long poll behind GetWorkflowExecutionHistory with
// wait_new_event (how a client waits for a result), and a start that waits for its run's close
// (StartWorkflowExecution with wait_for_close). A watcher is a callback, not a thread; Notify
// runs and forgets the run's watchers it concerns. A watcher may care only about the run
// closing (a client waiting for the result): the run's other transitions leave it waiting
// instead of waking it to read and wait again; WatchClose also hands it the close event the
// closing transition committed, so it answers without reading it back. Bounded: past the limit
// Watch refuses.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kiln/api/v1/history.pb.h"

namespace kiln::orchestrator {

class RunWatchers {
 public:
  // `on_count` (optional) hears the number of waiting watchers after each change, under this
  // object's lock (the server sets a gauge with it; it must not call back in).
  explicit RunWatchers(size_t max_watchers = 50'000, std::function<void(size_t)> on_count = nullptr)
      : max_watchers_(max_watchers), on_count_(std::move(on_count)) {}

  // `callback` runs once, on the notifying thread (never under this object's lock), unless
  // cancelled first.
  absl::StatusOr<uint64_t> Watch(const std::string& run_id, std::function<void()> callback,
                                 bool close_only = false);
  // A close-only watcher that gets the run's close event: valid only during the call, null when
  // the notifier did not have it (Shutdown, a Notify without one).
  using CloseCallback = std::function<void(const kiln::api::v1::HistoryEvent* close_event)>;
  absl::StatusOr<uint64_t> WatchClose(const std::string& run_id, CloseCallback callback);
  // True when the watcher was removed before it ran.
  bool Cancel(uint64_t id);
  // The run's history grew; `closed`: it closed (every watcher runs, close-only ones too), with
  // `close_event` the event that closed it when the caller has it (borrowed for the call).
  void Notify(const std::string& run_id, bool closed = true,
              const kiln::api::v1::HistoryEvent* close_event = nullptr);
  // At shutdown: runs every watcher (close events null), so waiting calls answer, and refuses
  // every later Watch with kUnavailable, so a woken call that reads and would wait again answers
  // instead.
  void Shutdown();
  size_t size();

 private:
  void Counted() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (on_count_) on_count_(run_of_.size());
  }

  const size_t max_watchers_;
  const std::function<void(size_t)> on_count_;
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<uint64_t> Add(const std::string& run_id, CloseCallback callback, bool close_only);

  struct Watcher {
    CloseCallback callback;
    bool close_only = false;
  };
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint64_t, Watcher>> by_run_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> run_of_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
