#include "orchestrator/frontend/query_registry.h"

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {

absl::StatusOr<std::pair<std::string, int64_t>> QueryRegistry::Add(
    kiln::api::v1::WorkflowQuery query, Callback callback) {
  absl::MutexLock lock(&mu_);
  if (queries_.size() >= max_in_flight_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many queries in flight (limit ", max_in_flight_, ")"));
  }
  int64_t n = next_++;
  std::string id = absl::StrCat("q", n);
  queries_[id] = Entry{std::move(query), std::move(callback)};
  return std::make_pair(id, -n);
}

std::optional<kiln::api::v1::WorkflowQuery> QueryRegistry::Get(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = queries_.find(id);
  if (it == queries_.end()) return std::nullopt;
  return it->second.query;
}

bool QueryRegistry::Complete(const std::string& id,
                             absl::StatusOr<kiln::api::v1::Payloads> answer) {
  Callback callback;
  {
    absl::MutexLock lock(&mu_);
    auto it = queries_.find(id);
    if (it == queries_.end()) return false;
    callback = std::move(it->second.callback);
    queries_.erase(it);
  }
  callback(std::move(answer));
  return true;
}

}  // namespace kiln::orchestrator
