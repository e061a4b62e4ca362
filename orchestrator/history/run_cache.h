// The history service's cache of run states, and the per-run lock that serialises transitions
// on one run. Bounded (LRU); an entry in use is never evicted, so two callers can never hold two
// different locks for the same run.
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "kiln/internal/v1/persistence.pb.h"

namespace kiln::orchestrator {

class RunCache {
 public:
  struct Entry {
    absl::Mutex mu;
    // nullopt until loaded from the store (or after a commit whose outcome is unknown).
    std::optional<kiln::internal::v1::ExecutionState> state ABSL_GUARDED_BY(mu);
  };

  // Holds one run's lock for its lifetime.
  class Handle {
   public:
    Handle(std::shared_ptr<Entry> entry) : entry_(std::move(entry)), lock_(&entry_->mu) {}
    Entry* operator->() const { return entry_.get(); }
    Entry& operator*() const { return *entry_; }

   private:
    std::shared_ptr<Entry> entry_;
    absl::MutexLock lock_;
  };

  explicit RunCache(size_t capacity) : capacity_(capacity) {}

  // Returns the run's entry, locked. Blocks while another transition holds it.
  std::unique_ptr<Handle> Acquire(const std::string& run_id);

  size_t size();

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
};

}  // namespace kiln::orchestrator
