// The metrics Matching records, created once in the process registry. Labels are bounded on
// purpose: by task kind and result only, never by queue or namespace (queues are user-named
// and unbounded in number). A null registry records nothing, for tests that do not look.
#pragma once

#include <array>
#include <cstdint>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator::matching_internal {

// How a poll was answered.
enum class PollResult : uint8_t {
  kSyncMatch = 0,  // handed a task the moment it was added
  kBacklog = 1,    // given a task that waited in memory or in the store
  kTimeout = 2,    // its deadline passed
  kCancelled = 3,  // CancelPoll, or matching shut down
};
inline constexpr int kPollResultCount = 4;

// "workflow" or "activity": the label value and the word used in error messages.
const char* TaskKindName(keys::TaskKind kind);

class MatchingMetrics {
 public:
  explicit MatchingMetrics(prometheus::Registry* registry);

  void RecordPollResult(keys::TaskKind kind, PollResult result);
  // From the task's creation to its hand-out to a poller.
  void RecordScheduleToStart(keys::TaskKind kind, absl::Duration latency);
  // Gauges move by deltas so that several Matching instances may share one registry.
  void AddWaitingPolls(keys::TaskKind kind, int64_t delta);
  void AddBufferedTasks(int64_t delta);

 private:
  static constexpr int kKinds = 2;
  static int KindIndex(keys::TaskKind kind) { return kind == keys::TaskKind::kWorkflow ? 0 : 1; }

  // All null when there is no registry.
  std::array<std::array<prometheus::Counter*, kPollResultCount>, kKinds> poll_results_{};
  std::array<prometheus::Histogram*, kKinds> schedule_to_start_{};
  std::array<prometheus::Gauge*, kKinds> waiting_polls_{};
  prometheus::Gauge* buffered_tasks_ = nullptr;
};

}  // namespace kiln::orchestrator::matching_internal
