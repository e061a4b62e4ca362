// Reading a task queue's backlog (Table::kTasks) back from the store: the next tasks to put in
// memory, and the summary Describe reports. Plain functions over a Store, no matching state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator::matching_internal {

struct BacklogPage {
  // In task-id order.
  std::vector<QueuedTask> tasks;
  // The read saw every entry of the queue (it did not stop at `want`).
  bool reached_end = false;
};

// Reads the queue's entries in task-id order, skipping the ids in `skip` (already in memory),
// until `want` tasks are collected or the queue's entries end. An entry that does not parse is
// logged and skipped: one bad record must not stop a queue.
absl::StatusOr<BacklogPage> ReadBacklog(Store& store, keys::TaskKind kind, std::string_view ns,
                                        std::string_view queue,
                                        const absl::flat_hash_set<int64_t>& skip, size_t want);

struct BacklogSummary {
  int64_t count = 0;
  // InfinitePast when no entry was read.
  absl::Time oldest_created = absl::InfinitePast();
  // The queue holds more than `limit` entries; count is `limit`.
  bool capped = false;
};

// Counts the queue's entries, reading at most `limit` of them.
absl::StatusOr<BacklogSummary> SummarizeBacklog(Store& store, keys::TaskKind kind,
                                                std::string_view ns, std::string_view queue,
                                                size_t limit);

}  // namespace kiln::orchestrator::matching_internal
