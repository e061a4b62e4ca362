// Limits that every Store implementation enforces on a WriteBatch before applying any of it, so
// the RocksDB and in-memory stores refuse exactly the same batches, and a runaway caller gets a
// clear kInvalidArgument instead of a memory spike or a stalled write path.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

// Engine keys are a few names and integers; anything this long is a bug upstream.
inline constexpr size_t kMaxKeyBytes = 64 << 10;
// One commit's key and value bytes. Large enough for several 1 MiB payloads and their history,
// small next to the memtable budget (RocksDbOptions), so one batch cannot blow the memory bound.
inline constexpr size_t kMaxCommitBytes = 32 << 20;
// One commit's op count.
inline constexpr size_t kMaxCommitOps = 100'000;

// OK when every op names a known table and the batch is within the limits above.
absl::Status ValidateBatch(const WriteBatch& batch);

// True for the tables of the Table enum (a cast integer may name none).
bool IsKnownTable(Table table);

}  // namespace kiln::orchestrator
