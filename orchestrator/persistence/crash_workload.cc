#include "orchestrator/persistence/crash_workload.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator::crash_workload {
namespace {

constexpr int kHistoryPerBatch = 4;

std::string Prefix(int round, int thread) { return absl::StrFormat("r%02d/t%02d/", round, thread); }

std::string IndexKey(int round, int thread, int64_t index) {
  std::string key = Prefix(round, thread);
  keys::AppendBigEndian64(&key, static_cast<uint64_t>(index));
  return key;
}

// Deterministic contents: the first record is large (20-27 KB) so batches cross the WAL's
// 32 KiB blocks at varying offsets.
std::string Value(int round, int thread, int64_t index, int part) {
  size_t size = part == 0 ? 20'000 + static_cast<size_t>(index % 8) * 1'000 : 100;
  std::string seed = absl::StrCat(round, ":", thread, ":", index, ":", part, ";");
  std::string value;
  value.reserve(size);
  while (value.size() < size) value.append(seed);
  value.resize(size);
  return value;
}

}  // namespace

WriteBatch Batch(int round, int thread, int64_t index) {
  WriteBatch batch;
  std::string key = IndexKey(round, thread, index);
  for (int part = 0; part < kHistoryPerBatch; ++part) {
    batch.Put(Table::kHistory, absl::StrCat(key, part), Value(round, thread, index, part));
  }
  batch.Put(Table::kTasks, key, "task");
  std::string progress;
  keys::AppendBigEndian64(&progress, static_cast<uint64_t>(index));
  batch.Put(Table::kExecutions, Prefix(round, thread), progress);
  return batch;
}

absl::StatusOr<int64_t> CountIntact(Store& store, int round, int thread) {
  const std::string prefix = Prefix(round, thread);
  absl::Status problem;
  auto fail = [&](const std::string& what) {
    if (problem.ok()) problem = absl::DataLossError(absl::StrCat(prefix, ": ", what));
    return false;
  };

  // History: records come in index order, kHistoryPerBatch per index, all of them.
  int64_t count = 0;
  int part = 0;
  RETURN_IF_ERROR(store.Scan(
      Table::kHistory, prefix, keys::PrefixEnd(prefix), 0,
      [&](std::string_view key, std::string_view value) {
        std::string expected = absl::StrCat(IndexKey(round, thread, count), part);
        if (key != expected)
          return fail(absl::StrCat("history record ", count, "/", part, " missing"));
        if (value != Value(round, thread, count, part)) {
          return fail(absl::StrCat("history record ", count, "/", part, " has wrong contents"));
        }
        if (++part == kHistoryPerBatch) {
          part = 0;
          ++count;
        }
        return true;
      }));
  if (part != 0) fail(absl::StrCat("batch ", count, " is torn: ", part, " history records"));

  int64_t tasks = 0;
  RETURN_IF_ERROR(store.Scan(Table::kTasks, prefix, keys::PrefixEnd(prefix), 0,
                             [&](std::string_view key, std::string_view) {
                               if (key != IndexKey(round, thread, tasks)) {
                                 return fail(absl::StrCat("task ", tasks, " missing"));
                               }
                               ++tasks;
                               return true;
                             }));
  if (tasks != count) fail(absl::StrCat(tasks, " tasks for ", count, " batches"));

  ASSIGN_OR_RETURN(std::optional<std::string> progress, store.Get(Table::kExecutions, prefix));
  if (count == 0 && progress.has_value()) fail("progress without batches");
  if (count > 0 && (!progress.has_value() ||
                    keys::ReadBigEndian64(*progress) != static_cast<uint64_t>(count - 1))) {
    fail(absl::StrCat("progress does not name batch ", count - 1));
  }
  RETURN_IF_ERROR(problem);
  return count;
}

}  // namespace kiln::orchestrator::crash_workload
