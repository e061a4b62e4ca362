#include "orchestrator/history/run_cache.h"

namespace kiln::orchestrator {

std::unique_ptr<RunCache::Handle> RunCache::Acquire(const std::string& run_id) {
  std::shared_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(run_id);
    if (it == slots_.end()) {
      lru_.push_front(run_id);
      it = slots_.emplace(run_id, Slot{std::make_shared<Entry>(), lru_.begin()}).first;
      entry = it->second.entry;  // Held before evicting, so the new entry itself stays.
      EvictLocked();
    } else {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      entry = it->second.entry;
    }
  }
  // Lock outside the cache lock: a long transition on one run must not stall the others.
  return std::make_unique<Handle>(std::move(entry));
}

void RunCache::EvictLocked() {
  // Walk from the least recently used end; skip entries someone holds (use_count > 1: only the
  // cache lock hands out references, so the count cannot grow behind our back).
  auto it = lru_.end();
  while (slots_.size() > capacity_ && it != lru_.begin()) {
    --it;
    auto slot = slots_.find(*it);
    if (slot->second.entry.use_count() > 1) continue;
    slots_.erase(slot);
    it = lru_.erase(it);
  }
}

size_t RunCache::size() {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

}  // namespace kiln::orchestrator
