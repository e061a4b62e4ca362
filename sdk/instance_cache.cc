#include "sdk/instance_cache.h"

#include <utility>

namespace kiln::sdk {

std::unique_ptr<WorkflowInstance> InstanceCache::Checkout(const std::string& run_id) {
  auto it = entries_.find(run_id);
  if (it == entries_.end()) return nullptr;
  std::unique_ptr<WorkflowInstance> instance = std::move(it->second.instance);
  lru_.erase(it->second.lru);
  entries_.erase(it);
  return instance;
}

std::vector<std::unique_ptr<WorkflowInstance>> InstanceCache::Put(
    const std::string& run_id, std::unique_ptr<WorkflowInstance> instance) {
  std::vector<std::unique_ptr<WorkflowInstance>> left;
  if (auto it = entries_.find(run_id); it != entries_.end()) {
    Entry& held = it->second;
    if (held.instance->last_started_event_id() > instance->last_started_event_id()) {
      std::swap(held.instance, instance);  // the held one is further along: it stays
    }
    left.push_back(std::exchange(held.instance, std::move(instance)));
    lru_.splice(lru_.begin(), lru_, held.lru);
  } else {
    lru_.push_front(run_id);
    entries_.emplace(run_id, Entry{std::move(instance), lru_.begin()});
  }
  while (entries_.size() > capacity_) {
    auto victim = entries_.find(lru_.back());
    left.push_back(std::move(victim->second.instance));
    entries_.erase(victim);
    lru_.pop_back();
  }
  return left;
}

void InstanceCache::Clear() {
  entries_.clear();
  lru_.clear();
}

}  // namespace kiln::sdk
