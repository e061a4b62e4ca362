#include "worker/http/delivery_cache.h"

namespace kiln::worker {

std::optional<HttpResponse> DeliveryCache::Get(const std::string& delivery_id) {
  auto it = index_.find(delivery_id);
  if (it == index_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->second;
}

void DeliveryCache::Put(const std::string& delivery_id, HttpResponse response) {
  if (auto it = index_.find(delivery_id); it != index_.end()) {
    it->second->second = std::move(response);
    entries_.splice(entries_.begin(), entries_, it->second);
    return;
  }
  entries_.emplace_front(delivery_id, std::move(response));
  index_[delivery_id] = entries_.begin();
  while (index_.size() > capacity_) {
    index_.erase(entries_.back().first);
    entries_.pop_back();
  }
}

}  // namespace kiln::worker
