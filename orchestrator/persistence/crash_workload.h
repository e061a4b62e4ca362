// The workload of the kill -9 durability test, shared by the writer process it kills
// (crash_writer_main.cc) and the test that checks what survived (rocksdb_store_test.cc).
// Each writer thread commits numbered batches; every batch spans several tables and a WAL
// block or two, so a torn batch would show.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator::crash_workload {

// The batch thread `thread` of round `round` commits as its `index`th.
WriteBatch Batch(int round, int thread, int64_t index);

// How many of that thread's batches the store holds: they must be batches 0..n-1, each whole,
// and nothing else. kDataLoss describes the first torn, missing or stray record.
absl::StatusOr<int64_t> CountIntact(Store& store, int round, int thread);

}  // namespace kiln::orchestrator::crash_workload
