// The running workflows a workflow worker keeps between their tasks: at most `capacity`, one
// per run, the least recently used evicted first. A task takes its run's instance out
// (Checkout), runs on it, and puts it back (Put). Not thread-safe: the worker locks around it.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "sdk/workflow_instance.h"

namespace kiln::sdk {

class InstanceCache {
 public:
  explicit InstanceCache(size_t capacity) : capacity_(capacity) {}

  // Takes the run's instance out; nullptr when none is held.
  std::unique_ptr<WorkflowInstance> Checkout(const std::string& run_id);
  // Holds `instance` as the run's, most recently used. The run may be held already: a later
  // task of the run can finish on a fresh instance (a full replay) before the task that checked
  // out, or created, `instance` puts it back. The instance further along in the history (its
  // last workflow task started later) stays; on a tie, `instance`. Returns what left the cache
  // (the other instance of the run, the evicted ones) for the caller to destroy outside its
  // lock.
  [[nodiscard]] std::vector<std::unique_ptr<WorkflowInstance>> Put(
      const std::string& run_id, std::unique_ptr<WorkflowInstance> instance);
  bool Contains(const std::string& run_id) const { return entries_.contains(run_id); }
  void Clear();
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::unique_ptr<WorkflowInstance> instance;
    std::list<std::string>::iterator lru;  // the run's one node in lru_
  };

  const size_t capacity_;
  absl::flat_hash_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // run ids, most recently used first; one node per entry
};

}  // namespace kiln::sdk
