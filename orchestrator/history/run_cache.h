// The history service's cache of run states, and the per-run lock that serialises transitions
// on one run (a fiber::Mutex: held across the transition's commit, which parks a fiber). Bounded
// (LRU); an entry in use is never evicted, so two callers can never hold two different locks for
// the same run.
#pragma once

#include <atomic>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/fiber.h"
#include "kiln/api/v1/history.pb.h"
#include "kiln/internal/v1/persistence.pb.h"

namespace kiln::orchestrator {

struct HeldCommit;  // history_engine.h

class RunCache {
 public:
  struct Entry {
    ~Entry();
    fiber::Mutex mu;
    // nullopt until loaded from the store (or after a commit whose outcome is unknown).
    std::optional<kiln::internal::v1::ExecutionState> state ABSL_GUARDED_BY(mu);
    // The run's events since its last completed workflow task's WorkflowTaskStarted (ids
    // contiguous, the last one the state's last event): what the next workflow task's partial
    // history holds, answered without reading the store. Empty when not all known here.
    std::vector<kiln::api::v1::HistoryEvent> recent ABSL_GUARDED_BY(mu);
    size_t recent_bytes ABSL_GUARDED_BY(mu) = 0;
    std::atomic<int64_t>* budget = nullptr;  // RunCache::recent_total_, given back on destruction
    // The run's commit held for its workflow task's answer, while that answer's transition runs
    // on the run, its lock lent by the parked holder (HistoryEngine::Commit): its commit carries
    // the held batch.
    HeldCommit* held ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Holds one run's lock for its lifetime.
  class Handle {
   public:
    Handle(std::shared_ptr<Entry> entry) : entry_(std::move(entry)), lock_(&entry_->mu) {}
    Entry* operator->() const { return entry_.get(); }
    Entry& operator*() const { return *entry_; }

   private:
    std::shared_ptr<Entry> entry_;
    fiber::MutexLock lock_;
  };

  explicit RunCache(size_t capacity) : capacity_(capacity) {}

  // Returns the run's entry, locked. Blocks while another transition holds it.
  std::unique_ptr<Handle> Acquire(const std::string& run_id);

  size_t size();

  // Keeps a committed transition's `events` in the entry's recent tail, dropping those at or
  // before `after` (the last completed workflow task's started event). A gap, a run over
  // kMaxRecentBytesPerRun or all runs over kMaxRecentBytes empty the tail instead. The events
  // kept are moved out of `events` (the deque keeps its size: moved-from events).
  void Remember(Entry& entry, std::deque<kiln::api::v1::HistoryEvent>&& events, int64_t after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu);
  void Forget(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu);
  // Events `from`..`to` from the tail, if it holds them all.
  std::optional<kiln::api::v1::History> Recent(Entry& entry, int64_t from, int64_t to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu);
  int64_t recent_bytes() const { return recent_total_.load(); }

  static constexpr size_t kMaxRecentBytesPerRun = 16 << 10;
  static constexpr int64_t kMaxRecentBytes = 8 << 20;

 private:
  struct Slot {
    std::shared_ptr<Entry> entry;
    std::list<std::string>::iterator lru;
  };
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);
  // Most recently used first.
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> recent_total_{0};
};

}  // namespace kiln::orchestrator
