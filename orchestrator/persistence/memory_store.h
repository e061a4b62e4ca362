// An in-memory Store: one ordered map per table under one mutex. For unit tests and
// deterministic simulation, where RocksDB's disk IO and background threads would only add
// noise. It keeps Store's contract (atomic batches, snapshot scans, the batch limits) but
// "durable" means only "visible to later reads in this process".
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

class MemoryStore final : public Store {
 public:
  MemoryStore() = default;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  absl::Status Commit(const WriteBatch& batch) override;
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override;
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override;
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override;
  // Exact: the key and value bytes held.
  uint64_t ApproximateSize() override;

 private:
  // std::less<> allows lookups by string_view; std::string compares bytes as unsigned, the
  // same order as RocksDB's bytewise comparator.
  using TableMap = std::map<std::string, std::string, std::less<>>;
  using Entries = std::vector<std::pair<std::string, std::string>>;

  // Copies up to `limit` entries of [start, end) in the requested direction under the lock, so
  // visitors run on a snapshot without the lock held (they may call back into the store).
  absl::StatusOr<Entries> CopyRange(Table table, std::string_view start, std::string_view end,
                                    size_t limit, bool reverse);

  absl::Mutex mu_;
  std::array<TableMap, kTableCount> tables_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::orchestrator
