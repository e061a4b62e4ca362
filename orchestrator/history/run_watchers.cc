#include "orchestrator/history/run_watchers.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {

absl::StatusOr<uint64_t> RunWatchers::Watch(const std::string& run_id,
                                            std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  if (run_of_.size() >= max_watchers_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many waiting history reads (limit ", max_watchers_, ")"));
  }
  uint64_t id = next_id_++;
  by_run_[run_id].emplace(id, std::move(callback));
  run_of_.emplace(id, run_id);
  return id;
}

bool RunWatchers::Cancel(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = run_of_.find(id);
  if (it == run_of_.end()) return false;
  auto run = by_run_.find(it->second);
  run->second.erase(id);
  if (run->second.empty()) by_run_.erase(run);
  run_of_.erase(it);
  return true;
}

void RunWatchers::Notify(const std::string& run_id) {
  absl::flat_hash_map<uint64_t, std::function<void()>> fired;
  {
    absl::MutexLock lock(&mu_);
    auto run = by_run_.find(run_id);
    if (run == by_run_.end()) return;
    fired = std::move(run->second);
    by_run_.erase(run);
    for (const auto& [id, callback] : fired) run_of_.erase(id);
  }
  for (auto& [id, callback] : fired) callback();
}

void RunWatchers::NotifyAll() {
  std::vector<std::function<void()>> fired;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [run, watchers] : by_run_) {
      for (auto& [id, callback] : watchers) fired.push_back(std::move(callback));
    }
    by_run_.clear();
    run_of_.clear();
  }
  for (auto& callback : fired) callback();
}

size_t RunWatchers::size() {
  absl::MutexLock lock(&mu_);
  return run_of_.size();
}

}  // namespace kiln::orchestrator
