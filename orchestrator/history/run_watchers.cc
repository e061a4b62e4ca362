#include "orchestrator/history/run_watchers.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {

namespace api = ::kiln::api::v1;

absl::StatusOr<uint64_t> RunWatchers::Watch(const std::string& run_id,
                                            std::function<void()> callback, bool close_only) {
  return Add(
      run_id, [callback = std::move(callback)](const api::HistoryEvent*) { callback(); },
      close_only);
}

absl::StatusOr<uint64_t> RunWatchers::WatchClose(const std::string& run_id,
                                                 CloseCallback callback) {
  return Add(run_id, std::move(callback), /*close_only=*/true);
}

absl::StatusOr<uint64_t> RunWatchers::Add(const std::string& run_id, CloseCallback callback,
                                          bool close_only) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("the orchestrator is shutting down");
  if (run_of_.size() >= max_watchers_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many waiting history reads (limit ", max_watchers_, ")"));
  }
  uint64_t id = next_id_++;
  by_run_[run_id].emplace(id, Watcher{std::move(callback), close_only});
  run_of_.emplace(id, run_id);
  Counted();
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
  Counted();
  return true;
}

void RunWatchers::Notify(const std::string& run_id, bool closed,
                         const api::HistoryEvent* close_event) {
  std::vector<CloseCallback> fired;
  {
    absl::MutexLock lock(&mu_);
    auto run = by_run_.find(run_id);
    if (run == by_run_.end()) return;
    for (auto it = run->second.begin(); it != run->second.end();) {
      if (!closed && it->second.close_only) {
        ++it;
        continue;
      }
      fired.push_back(std::move(it->second.callback));
      run_of_.erase(it->first);
      run->second.erase(it++);
    }
    if (run->second.empty()) by_run_.erase(run);
    Counted();
  }
  for (auto& callback : fired) callback(closed ? close_event : nullptr);
}

void RunWatchers::Shutdown() {
  std::vector<CloseCallback> fired;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (auto& [run, watchers] : by_run_) {
      for (auto& [id, watcher] : watchers) fired.push_back(std::move(watcher.callback));
    }
    by_run_.clear();
    run_of_.clear();
    Counted();
  }
  for (auto& callback : fired) callback(nullptr);
}

size_t RunWatchers::size() {
  absl::MutexLock lock(&mu_);
  return run_of_.size();
}

}  // namespace kiln::orchestrator
