// The live side of log streams: a lock per stream that serialises its appends (different
// streams append in parallel), and the followers of each stream, told about every chunk right
// after its commit, in offset order. Only streams in use (being appended to or followed) take
// memory here.
//
// The promise to a follower: every chunk committed after Follow() returns is delivered to it
// (OnAppended), and every chunk committed before is in the store. So a follower registers first
// and reads the store after, and deduplicates by offset where the two overlap.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/fiber.h"
#include "orchestrator/logs/log_metrics.h"
#include "orchestrator/logs/log_store.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

class LogFollower {
 public:
  virtual ~LogFollower() = default;
  // A chunk was committed. Runs with the stream's lock held, in offset order: it must not
  // block nor call back into LogStreams.
  virtual void OnAppended(const LogChunk& chunk) = 0;
  // The store may hold chunks this follower was not given: a commit whose outcome is unknown
  // (it may have applied), or a retried append that an earlier attempt had stored. Same rules
  // as OnAppended.
  virtual void OnStoreChanged() = 0;
};

class LogStreams {
 public:
  LogStreams(Store* store, LogMetrics* metrics) : store_(store), metrics_(metrics) {}
  LogStreams(const LogStreams&) = delete;
  LogStreams& operator=(const LogStreams&) = delete;
  ~LogStreams();

  // AppendLogChunk (log_store.h) under the stream's lock, then the followers hear of the chunk.
  // May wait for a synced commit: call it on the executor.
  absl::StatusOr<AppendOutcome> Append(const std::string& run_id, const std::string& stream,
                                       int64_t sequence, std::string_view data);

  // `follower` must stay valid until Unfollow returns; after Unfollow returns it is never
  // called again. Both may wait for an append in progress on the stream.
  void Follow(const std::string& run_id, const std::string& stream, LogFollower* follower);
  void Unfollow(const std::string& run_id, const std::string& stream, LogFollower* follower);

  // Streams with an append in progress or a follower (for tests).
  size_t active_streams();

 private:
  struct Stream {
    // A fiber::Mutex: held across the append's commit, which parks an engine fiber.
    fiber::Mutex mu;
    std::vector<LogFollower*> followers ABSL_GUARDED_BY(mu);
    // Appends in progress plus followers; the entry goes when it drops to 0. Guarded by the
    // LogStreams lock, not `mu`.
    int users = 0;
  };

  static std::string Key(const std::string& run_id, const std::string& stream);
  Stream* Acquire(const std::string& key);
  void Release(const std::string& key);

  Store* store_;
  LogMetrics* metrics_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
