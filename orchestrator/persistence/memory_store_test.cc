#include "orchestrator/persistence/memory_store.h"

#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/metered_store.h"
#include "orchestrator/persistence/store_conformance.h"

namespace kiln::orchestrator {
namespace {

TEST_CASE("A batch can take back a put: neither the record nor a tombstone is written") {
  WriteBatch batch;
  batch.Put(Table::kTimers, "t1", "first");
  batch.Put(Table::kTimers, "t2", "kept");
  batch.Put(Table::kHistory, "t1", "other table");
  const size_t bytes = batch.bytes();
  REQUIRE(batch.Unput(Table::kTimers, "t1"));
  CHECK(batch.size() == 2);
  CHECK(batch.bytes() == bytes - 2 - 5);
  CHECK_FALSE(batch.Unput(Table::kTimers, "t1"));  // gone already
  CHECK_FALSE(batch.Unput(Table::kTimers, "t3"));  // never put
  batch.Delete(Table::kTimers, "t2");
  CHECK_FALSE(batch.Unput(Table::kTimers, "t2"));  // its last op is a delete: not taken back
  MemoryStore store;
  REQUIRE(store.Commit(batch).ok());
  CHECK_FALSE(store.Get(Table::kTimers, "t1")->has_value());
  CHECK_FALSE(store.Get(Table::kTimers, "t2")->has_value());
  CHECK(store.Get(Table::kHistory, "t1")->value() == "other table");
}

TEST_CASE("MemoryStore passes the store conformance suite", "[conformance]") {
  RunStoreConformance([] { return std::make_unique<MemoryStore>(); });
}

// The wrappers must be transparent when idle: the suite runs through them too.
TEST_CASE("An idle FaultInjectingStore passes the store conformance suite", "[conformance]") {
  std::vector<std::unique_ptr<MemoryStore>> bases;
  RunStoreConformance([&] {
    bases.push_back(std::make_unique<MemoryStore>());
    return std::make_unique<FaultInjectingStore>(*bases.back());
  });
}

TEST_CASE("A MeteredStore passes the store conformance suite", "[conformance]") {
  prometheus::Registry registry;
  FakeClock clock;
  std::vector<std::unique_ptr<MemoryStore>> bases;
  RunStoreConformance([&] {
    bases.push_back(std::make_unique<MemoryStore>());
    return std::make_unique<MeteredStore>(*bases.back(), registry, clock);
  });
}

TEST_CASE("MemoryStore's ApproximateSize counts live key and value bytes exactly") {
  MemoryStore store;
  WriteBatch batch;
  batch.Put(Table::kMeta, "key", "value");         // 8
  batch.Put(Table::kHistory, "k2", "0123456789");  // 12
  REQUIRE(store.Commit(batch).ok());
  CHECK(store.ApproximateSize() == 20);
  WriteBatch change;
  change.Put(Table::kMeta, "key", "v");  // 8 -> 4
  change.Delete(Table::kHistory, "k2");
  REQUIRE(store.Commit(change).ok());
  CHECK(store.ApproximateSize() == 4);
}

}  // namespace
}  // namespace kiln::orchestrator
