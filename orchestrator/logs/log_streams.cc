#include "orchestrator/logs/log_streams.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiln::orchestrator {

LogStreams::~LogStreams() {
  absl::MutexLock lock(&mu_);
  // Every follower unfollows before it goes, and appends run on the executor, which is joined
  // before this object is destroyed.
  assert(streams_.empty());
}

std::string LogStreams::Key(const std::string& run_id, const std::string& stream) {
  return absl::StrCat(run_id, std::string(1, '\0'), stream);
}

LogStreams::Stream* LogStreams::Acquire(const std::string& key) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Stream>& entry = streams_[key];
  if (entry == nullptr) entry = std::make_unique<Stream>();
  ++entry->users;
  return entry.get();
}

void LogStreams::Release(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(key);
  assert(it != streams_.end() && it->second->users > 0);
  if (--it->second->users == 0) streams_.erase(it);
}

absl::StatusOr<AppendOutcome> LogStreams::Append(const std::string& run_id,
                                                 const std::string& stream, int64_t sequence,
                                                 std::string_view data) {
  const std::string key = Key(run_id, stream);
  Stream* entry = Acquire(key);
  absl::StatusOr<AppendOutcome> outcome;
  {
    fiber::MutexLock lock(&entry->mu);
    {
      // Only the stream's fiber::Mutex is held: the commit may park this fiber.
      fiber::ParkScope park;
      outcome = AppendLogChunk(*store_, run_id, stream, sequence, data);
    }
    if (outcome.ok() && outcome->written) {
      metrics_->Written(data.size());
      if (!entry->followers.empty()) {
        const LogChunk chunk{outcome->offset, std::make_shared<const std::string>(data)};
        for (LogFollower* follower : entry->followers) follower->OnAppended(chunk);
      }
    } else if (!outcome.ok() || sequence != 0) {
      if (outcome.ok() && !data.empty()) metrics_->Duplicate();
      // A failed commit may have applied (kUnavailable), and a retry acknowledged here may be
      // of an attempt whose commit nobody announced: followers check the store.
      for (LogFollower* follower : entry->followers) follower->OnStoreChanged();
    }
  }
  Release(key);
  if (!outcome.ok() && absl::IsUnavailable(outcome.status())) {
    LogWarn("logs.append_outcome_unknown", {{"run_id", run_id}, {"status", outcome.status()}});
  }
  return outcome;
}

void LogStreams::Follow(const std::string& run_id, const std::string& stream,
                        LogFollower* follower) {
  Stream* entry = Acquire(Key(run_id, stream));
  fiber::MutexLock lock(&entry->mu);
  entry->followers.push_back(follower);
}

void LogStreams::Unfollow(const std::string& run_id, const std::string& stream,
                          LogFollower* follower) {
  const std::string key = Key(run_id, stream);
  Stream* entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(key);
    assert(it != streams_.end());
    entry = it->second.get();
  }
  {
    fiber::MutexLock lock(&entry->mu);
    auto& followers = entry->followers;
    auto it = std::find(followers.begin(), followers.end(), follower);
    assert(it != followers.end());
    followers.erase(it);
  }
  Release(key);
}

size_t LogStreams::active_streams() {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

}  // namespace kiln::orchestrator
