#include "orchestrator/matching/task_queue.h"

#include <algorithm>
#include <utility>

namespace kiln::orchestrator::matching_internal {

TaskQueue::TaskQueue(keys::TaskKind kind, std::string ns, std::string queue,
                     absl::Duration exclusive_lease, MatchingMetrics* metrics)
    : kind_(kind),
      ns_(std::move(ns)),
      queue_(std::move(queue)),
      metrics_(metrics),
      lease_(exclusive_lease) {}

TaskQueue::~TaskQueue() {
  metrics_->AddBufferedTasks(-static_cast<int64_t>(buffer_.size()));
  metrics_->AddWaitingPolls(kind_, -static_cast<int64_t>(waiters_.size()));
}

bool TaskQueue::IsBuffered(int64_t task_id) const {
  auto it = known_.find(task_id);
  return it != known_.end() && it->second == TaskState::kBuffered;
}

absl::flat_hash_set<int64_t> TaskQueue::KnownIds() const {
  absl::flat_hash_set<int64_t> ids;
  ids.reserve(known_.size());
  for (const auto& [id, state] : known_) ids.insert(id);
  return ids;
}

void TaskQueue::PushBack(QueuedTask task) {
  known_[task.task_id] = TaskState::kBuffered;
  buffer_.push_back(std::move(task));
  metrics_->AddBufferedTasks(1);
}

void TaskQueue::PushFront(QueuedTask task) {
  known_[task.task_id] = TaskState::kBuffered;
  buffer_.push_front(std::move(task));
  metrics_->AddBufferedTasks(1);
}

QueuedTask TaskQueue::PopFront() {
  QueuedTask task = std::move(buffer_.front());
  buffer_.pop_front();
  known_[task.task_id] = TaskState::kInFlight;
  metrics_->AddBufferedTasks(-1);
  return task;
}

bool TaskQueue::EvictBack() {
  if (buffer_.empty()) return false;
  known_.erase(buffer_.back().task_id);
  buffer_.pop_back();
  metrics_->AddBufferedTasks(-1);
  return true;
}

void TaskQueue::MarkInFlight(int64_t task_id) { known_[task_id] = TaskState::kInFlight; }

void TaskQueue::MarkDone(int64_t task_id) {
  auto it = known_.find(task_id);
  if (it != known_.end() && it->second == TaskState::kBuffered) {
    // Finished without being handed out from here (e.g. returned, then completed anyway): it
    // must not be handed out again. Rare, so a linear search is fine.
    auto pos = std::find_if(buffer_.begin(), buffer_.end(),
                            [task_id](const QueuedTask& t) { return t.task_id == task_id; });
    if (pos != buffer_.end()) {
      buffer_.erase(pos);
      metrics_->AddBufferedTasks(-1);
    }
  }
  if (it != known_.end()) known_.erase(it);
  if (scanning_) done_during_scan_.insert(task_id);
  if (recently_done_.insert(task_id).second) {
    recently_done_order_.push_back(task_id);
    if (recently_done_order_.size() > kRecentlyDoneIds) {
      recently_done_.erase(recently_done_order_.front());
      recently_done_order_.pop_front();
    }
  }
}

void TaskQueue::Forget(int64_t task_id) { known_.erase(task_id); }

void TaskQueue::BeginScan() {
  scanning_ = true;
  done_during_scan_.clear();
}

void TaskQueue::EndScan() {
  scanning_ = false;
  done_during_scan_.clear();
}

TaskQueue::WaiterList::iterator TaskQueue::AddWaiter(Waiter waiter, absl::Time now) {
  metrics_->AddWaitingPolls(kind_, 1);
  lease_.PollStarted(waiter.identity, now);
  return waiters_.insert(waiters_.end(), std::move(waiter));
}

Waiter TaskQueue::TakeWaiter(WaiterList::iterator it, absl::Time now) {
  Waiter waiter = std::move(*it);
  waiters_.erase(it);
  metrics_->AddWaitingPolls(kind_, -1);
  lease_.PollEnded(waiter.identity, now);
  return waiter;
}

std::optional<Waiter> TaskQueue::TakeFirstWaiter(absl::Time now,
                                                 std::string_view preferred_instance) {
  if (waiters_.empty()) return std::nullopt;
  if (!preferred_instance.empty()) {
    // Looked for among the longest waiting only: a queue may hold a thousand polls.
    constexpr int kPreferredScan = 64;
    int scanned = 0;
    for (auto it = waiters_.begin(); it != waiters_.end() && scanned < kPreferredScan;
         ++it, ++scanned) {
      if (it->worker_instance_id == preferred_instance) return TakeWaiter(it, now);
    }
  }
  return TakeWaiter(waiters_.begin(), now);
}

std::vector<Matching::PollId> TaskQueue::WaitersNotOf(const std::string& identity) const {
  std::vector<Matching::PollId> ids;
  for (const Waiter& waiter : waiters_) {
    if (waiter.identity != identity) ids.push_back(waiter.poll_id);
  }
  return ids;
}

void TaskQueue::TakeLease(const std::string& identity, absl::Time now) {
  size_t waiting = 0;
  for (const Waiter& waiter : waiters_) waiting += waiter.identity == identity ? 1 : 0;
  lease_.Take(identity, waiting, now);
}

void TaskQueue::RecordPoller(const std::string& identity, absl::Time now, absl::Duration expiry,
                             bool stream) {
  auto it = pollers_.find(identity);
  if (it != pollers_.end()) {
    it->second = {now, stream};
    return;
  }
  if (pollers_.size() >= kMaxPollerIdentitiesPerQueue) {
    // Full: drop the expired, and if none has expired, the least recently seen.
    absl::erase_if(pollers_, [&](const auto& entry) { return entry.second.at < now - expiry; });
    if (pollers_.size() >= kMaxPollerIdentitiesPerQueue) {
      auto oldest =
          std::min_element(pollers_.begin(), pollers_.end(),
                           [](const auto& a, const auto& b) { return a.second.at < b.second.at; });
      pollers_.erase(oldest);
    }
  }
  pollers_.emplace(identity, PollerSeen{now, stream});
}

std::vector<PollerInfo> TaskQueue::LivePollers(absl::Time now, absl::Duration expiry) const {
  absl::flat_hash_map<std::string, PollerInfo> live;
  for (const auto& [identity, seen] : pollers_) {
    if (seen.at >= now - expiry) live[identity] = {identity, seen.at, 0, seen.stream};
  }
  // A poll still waiting is a poller present now, however long ago it started.
  for (const Waiter& waiter : waiters_) {
    PollerInfo& info = live[waiter.identity];
    info.identity = waiter.identity;
    info.last_seen = now;
    ++info.waiting;
    info.stream = info.stream || waiter.stream;
  }
  std::vector<PollerInfo> pollers;
  pollers.reserve(live.size());
  for (auto& [identity, info] : live) pollers.push_back(std::move(info));
  std::sort(pollers.begin(), pollers.end(),
            [](const PollerInfo& a, const PollerInfo& b) { return a.identity < b.identity; });
  return pollers;
}

}  // namespace kiln::orchestrator::matching_internal
