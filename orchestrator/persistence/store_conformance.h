// The one behavioural suite every Store implementation must pass (RocksDB, memory, and the
// wrappers over them), so the engine can be tested on the memory store and trusted on RocksDB.
// It covers point ops, op order within a batch, atomicity, table independence, scan order,
// bounds and limits, binary keys, large values, concurrent commits and snapshot scans.
#pragma once

#include <functional>
#include <memory>

#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

// Returns a fresh, empty store each time it is called.
using StoreFactory = std::function<std::unique_ptr<Store>()>;

// Runs the suite as Catch2 sections of the calling TEST_CASE: Catch2 re-enters the test case
// once per section, and each run asks `make_store` for one new store.
void RunStoreConformance(const StoreFactory& make_store);

}  // namespace kiln::orchestrator
