// The answers given to recent webhook deliveries, by delivery id, so a redelivery gets the
// answer it got before without reaching the backend again. Least recently used entries go
// first once `capacity` is reached; a redelivery refreshes its entry. Not thread-safe: the
// owner guards it.
#pragma once

#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "worker/http/http_server.h"

namespace kiln::worker {

inline constexpr size_t kDefaultDeliveryCacheEntries = 4096;

class DeliveryCache {
 public:
  explicit DeliveryCache(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  std::optional<HttpResponse> Get(const std::string& delivery_id);
  void Put(const std::string& delivery_id, HttpResponse response);
  size_t size() const { return index_.size(); }

 private:
  using Entry = std::pair<std::string, HttpResponse>;
  const size_t capacity_;
  std::list<Entry> entries_;  // Most recently used first.
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace kiln::worker
