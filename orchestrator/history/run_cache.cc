#include "orchestrator/history/run_cache.h"

namespace kiln::orchestrator {

std::unique_ptr<RunCache::Handle> RunCache::Acquire(const std::string& run_id) {
  std::shared_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(run_id);
    if (it == slots_.end()) {
      lru_.push_front(run_id);
      auto created = std::make_shared<Entry>();
      created->budget = &recent_total_;
      it = slots_.emplace(run_id, Slot{std::move(created), lru_.begin()}).first;
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

RunCache::Entry::~Entry() {
  // Destroyed once unreachable: nobody else can hold the lock.
  fiber::MutexLock lock(&mu);
  if (budget != nullptr) budget->fetch_sub(static_cast<int64_t>(recent_bytes));
}

void RunCache::Forget(Entry& entry) {
  recent_total_.fetch_sub(static_cast<int64_t>(entry.recent_bytes));
  entry.recent.clear();
  entry.recent_bytes = 0;
}

void RunCache::Remember(Entry& entry, std::deque<kiln::api::v1::HistoryEvent>&& events,
                        int64_t after) {
  // What no partial history needs any more.
  size_t drop = 0;
  size_t dropped_bytes = 0;
  while (drop < entry.recent.size() && entry.recent[drop].event_id() <= after) {
    dropped_bytes += entry.recent[drop].ByteSizeLong();
    ++drop;
  }
  if (drop > 0) {
    entry.recent.erase(entry.recent.begin(), entry.recent.begin() + static_cast<ptrdiff_t>(drop));
    entry.recent_bytes -= dropped_bytes;
    recent_total_.fetch_sub(static_cast<int64_t>(dropped_bytes));
  }
  for (kiln::api::v1::HistoryEvent& event : events) {
    if (event.event_id() <= after) continue;
    // Contiguous from after + 1, or nothing.
    int64_t expected = entry.recent.empty() ? after + 1 : entry.recent.back().event_id() + 1;
    size_t bytes = event.ByteSizeLong();
    if (event.event_id() != expected || entry.recent_bytes + bytes > kMaxRecentBytesPerRun ||
        recent_total_.load() + static_cast<int64_t>(bytes) > kMaxRecentBytes) {
      Forget(entry);
      return;
    }
    entry.recent.push_back(std::move(event));
    entry.recent_bytes += bytes;
    recent_total_.fetch_add(static_cast<int64_t>(bytes));
  }
}

std::optional<kiln::api::v1::History> RunCache::Recent(Entry& entry, int64_t from, int64_t to) {
  if (entry.recent.empty() || from > to || entry.recent.front().event_id() > from ||
      entry.recent.back().event_id() < to) {
    return std::nullopt;
  }
  kiln::api::v1::History history;
  const int64_t first = entry.recent.front().event_id();
  for (int64_t id = from; id <= to; ++id) {
    *history.add_events() = entry.recent[static_cast<size_t>(id - first)];
  }
  return history;
}

size_t RunCache::size() {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

}  // namespace kiln::orchestrator
