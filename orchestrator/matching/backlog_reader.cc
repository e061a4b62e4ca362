#include "orchestrator/matching/backlog_reader.h"

#include <optional>
#include <string>
#include <utility>

#include "common/logging.h"
#include "common/proto_time.h"
#include "orchestrator/matching/matching_metrics.h"

namespace kiln::orchestrator::matching_internal {

namespace {

// Parses one backlog entry; logs and returns nullopt when it is not one.
std::optional<QueuedTask> ParseEntry(keys::TaskKind kind, std::string_view ns,
                                     std::string_view queue, size_t prefix_size,
                                     std::string_view key, std::string_view value) {
  QueuedTask task;
  task.kind = kind;
  task.ns = std::string(ns);
  task.queue = std::string(queue);
  task.task_id = keys::TaskIdOf(key);
  // The prefix ends in NUL and names never hold NUL, so a key of another length is not ours.
  if (key.size() != prefix_size + 8 ||
      !task.record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    LogError("matching.bad_backlog_entry", {{"kind", TaskKindName(kind)},
                                            {"namespace", ns},
                                            {"queue", queue},
                                            {"task_id", static_cast<long long>(task.task_id)}});
    return std::nullopt;
  }
  return task;
}

}  // namespace

absl::StatusOr<BacklogPage> ReadBacklog(Store& store, keys::TaskKind kind, std::string_view ns,
                                        std::string_view queue,
                                        const absl::flat_hash_set<int64_t>& skip, size_t want) {
  BacklogPage page;
  if (want == 0) return page;
  const std::string prefix = keys::TaskQueuePrefix(kind, ns, queue);
  // Only ids in `skip` are passed over (and entries that do not parse), so this many entries
  // are enough; it keeps the store from copying a long backlog (the in-memory store copies
  // the whole range it is asked for).
  const size_t limit = skip.size() + want;
  size_t visited = 0;
  bool stopped = false;
  absl::Status status = store.Scan(Table::kTasks, prefix, keys::PrefixEnd(prefix), limit,
                                   [&](std::string_view key, std::string_view value) {
                                     ++visited;
                                     if (skip.contains(keys::TaskIdOf(key))) return true;
                                     std::optional<QueuedTask> task =
                                         ParseEntry(kind, ns, queue, prefix.size(), key, value);
                                     if (!task.has_value()) return true;
                                     page.tasks.push_back(*std::move(task));
                                     if (page.tasks.size() < want) return true;
                                     stopped = true;
                                     return false;
                                   });
  if (!status.ok()) return status;
  // Stopping at the limit says nothing about what follows: only a read that ran out of
  // entries by itself has seen them all.
  page.reached_end = !stopped && visited < limit;
  return page;
}

absl::StatusOr<BacklogSummary> SummarizeBacklog(Store& store, keys::TaskKind kind,
                                                std::string_view ns, std::string_view queue,
                                                size_t limit) {
  BacklogSummary summary;
  const std::string prefix = keys::TaskQueuePrefix(kind, ns, queue);
  // One entry past the limit tells "exactly limit" from "more than limit".
  absl::Status status = store.Scan(
      Table::kTasks, prefix, keys::PrefixEnd(prefix), limit + 1,
      [&](std::string_view key, std::string_view value) {
        if (static_cast<size_t>(summary.count) == limit) {
          summary.capped = true;
          return false;
        }
        ++summary.count;
        std::optional<QueuedTask> task = ParseEntry(kind, ns, queue, prefix.size(), key, value);
        if (task.has_value() && task->record.has_created_time()) {
          absl::Time created = FromProto(task->record.created_time());
          if (summary.oldest_created == absl::InfinitePast() || created < summary.oldest_created) {
            summary.oldest_created = created;
          }
        }
        return true;
      });
  if (!status.ok()) return status;
  return summary;
}

}  // namespace kiln::orchestrator::matching_internal
