#include "orchestrator/persistence/fault_injecting_store.h"

#include <catch2/catch.hpp>
#include <optional>
#include <string>

#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

using Mode = FaultInjectingStore::CommitFaultMode;

WriteBatch OnePut(const std::string& key) {
  WriteBatch batch;
  batch.Put(Table::kExecutions, key, "v");
  return batch;
}

bool Has(Store& store, const std::string& key) {
  auto value = store.Get(Table::kExecutions, key);
  return value.ok() && value->has_value();
}

TEST_CASE("FaultInjectingStore fails the next N commits before applying them") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.FailNextCommits(2, Mode::kBeforeApply, absl::InternalError("disk on fire"));
  absl::Status first = store.Commit(OnePut("a"));
  CHECK(first.code() == absl::StatusCode::kInternal);
  CHECK(first.message() == "disk on fire");
  CHECK(store.Commit(OnePut("b")).code() == absl::StatusCode::kInternal);
  CHECK(store.Commit(OnePut("c")).ok());  // the third one is not claimed
  CHECK_FALSE(Has(base, "a"));
  CHECK_FALSE(Has(base, "b"));
  CHECK(Has(base, "c"));
  CHECK(store.commits() == 3);
  CHECK(store.commits_applied() == 1);
  CHECK(store.injected_commit_faults() == 2);
}

TEST_CASE("FaultInjectingStore can apply a commit and still report it failed") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.FailNextCommits(1, Mode::kAfterApply);
  absl::Status status = store.Commit(OnePut("a"));
  CHECK(status.code() == absl::StatusCode::kUnavailable);  // the default: outcome unknown
  CHECK(Has(base, "a"));
  CHECK(store.commits_applied() == 1);
  CHECK(store.injected_commit_faults() == 1);
}

TEST_CASE("FaultInjectingStore passes on the base store's own commit error") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.FailNextCommits(1, Mode::kAfterApply);
  WriteBatch bad;
  bad.Put(static_cast<Table>(kTableCount), "k", "v");
  CHECK(store.Commit(bad).code() == absl::StatusCode::kInvalidArgument);
  CHECK(store.commits_applied() == 0);
}

TEST_CASE("FaultInjectingStore fails reads on command") {
  MemoryStore base;
  FaultInjectingStore store(base);
  REQUIRE(store.Commit(OnePut("a")).ok());
  store.FailNextReads(3, absl::DataLossError("bad block"));
  auto visit = [](std::string_view, std::string_view) { return true; };
  CHECK(store.Get(Table::kExecutions, "a").status().code() == absl::StatusCode::kDataLoss);
  CHECK(store.Scan(Table::kExecutions, "", "", 0, visit).code() == absl::StatusCode::kDataLoss);
  CHECK(store.ReverseScan(Table::kExecutions, "", "", 0, visit).code() ==
        absl::StatusCode::kDataLoss);
  CHECK(Has(store, "a"));
  CHECK(store.injected_read_faults() == 3);
}

TEST_CASE("FaultInjectingStore asks its policy about commits the queue does not claim") {
  MemoryStore base;
  FaultInjectingStore store(base);
  int calls = 0;
  store.SetCommitFaultPolicy([&](const WriteBatch& batch)
                                 -> std::optional<FaultInjectingStore::CommitFault> {
    ++calls;
    if (batch.ops().front().key == "unlucky") {
      return FaultInjectingStore::CommitFault{Mode::kAfterApply, absl::UnavailableError("boom")};
    }
    return std::nullopt;
  });
  store.FailNextCommits(1, Mode::kBeforeApply);
  CHECK_FALSE(store.Commit(OnePut("queued")).ok());
  CHECK(calls == 0);
  CHECK(store.Commit(OnePut("fine")).ok());
  CHECK(store.Commit(OnePut("unlucky")).code() == absl::StatusCode::kUnavailable);
  CHECK(Has(base, "unlucky"));
  CHECK(calls == 2);

  store.ClearFaults();
  CHECK(store.Commit(OnePut("unlucky")).ok());
  CHECK(calls == 2);
  CHECK(store.commits() == 4);
  CHECK(store.injected_commit_faults() == 2);
}

TEST_CASE("FaultInjectingStore never injects an OK status") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.FailNextCommits(1, Mode::kBeforeApply, absl::OkStatus());
  CHECK(store.Commit(OnePut("a")).code() == absl::StatusCode::kUnavailable);
  CHECK_FALSE(Has(base, "a"));
}

WriteBatch Unsynced(const std::string& key, const std::string& value) {
  WriteBatch batch;
  batch.Put(Table::kExecutions, key, value);
  batch.set_sync(false);
  return batch;
}

std::string ValueOf(Store& store, const std::string& key) {
  auto value = store.Get(Table::kExecutions, key);
  return value.ok() && value->has_value() ? **value : "<none>";
}

TEST_CASE("A power cut loses the unsynced writes after the last synced commit") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.TrackUnsyncedWrites();
  REQUIRE(store.Commit(OnePut("a")).ok());
  REQUIRE(store.Commit(Unsynced("a", "overwritten")).ok());
  REQUIRE(store.Commit(Unsynced("b", "new")).ok());
  WriteBatch removes;
  removes.Delete(Table::kExecutions, "a");
  removes.set_sync(false);
  REQUIRE(store.Commit(removes).ok());
  CHECK(store.unsynced_batches() == 3);
  CHECK_FALSE(Has(store, "a"));  // visible before the cut, as RocksDB's memtable is

  auto lost = store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 3);
  CHECK(ValueOf(store, "a") == "v");  // each key as the last synced commit left it
  CHECK_FALSE(Has(store, "b"));
  CHECK(store.unsynced_batches() == 0);
  CHECK(store.power_cuts() == 1);
  CHECK(store.batches_lost() == 3);
}

TEST_CASE("A synced commit makes the unsynced writes before it durable") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.TrackUnsyncedWrites();
  REQUIRE(store.Commit(Unsynced("a", "1")).ok());
  REQUIRE(store.Commit(OnePut("b")).ok());  // syncs the log, "a" with it
  REQUIRE(store.Commit(Unsynced("c", "1")).ok());
  auto lost = store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 1);
  CHECK(Has(store, "a"));
  CHECK(Has(store, "b"));
  CHECK_FALSE(Has(store, "c"));
}

TEST_CASE("A power cut keeps a prefix of the unsynced log and loses the rest") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.TrackUnsyncedWrites();
  for (const char* key : {"a", "b", "c", "d"}) REQUIRE(store.Commit(Unsynced(key, key)).ok());
  auto lost = store.CutPower(/*keep=*/2);
  REQUIRE(lost.ok());
  CHECK(*lost == 2);
  CHECK(Has(store, "a"));
  CHECK(Has(store, "b"));
  CHECK_FALSE(Has(store, "c"));
  CHECK_FALSE(Has(store, "d"));
  // What survived a cut is on disk: a second cut takes nothing more.
  lost = store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 0);
  CHECK(Has(store, "b"));
}

TEST_CASE("A commit applied but reported failed is unsynced until a later sync") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.TrackUnsyncedWrites();
  REQUIRE(store.Commit(OnePut("a")).ok());
  store.FailNextCommits(1, Mode::kAfterApply);
  WriteBatch both;
  both.Put(Table::kExecutions, "a", "changed");
  both.Put(Table::kExecutions, "b", "new");
  CHECK(store.Commit(both).code() == absl::StatusCode::kUnavailable);
  CHECK(ValueOf(store, "a") == "changed");
  CHECK(store.unsynced_batches() == 1);
  auto lost = store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 1);
  CHECK(ValueOf(store, "a") == "v");
  CHECK_FALSE(Has(store, "b"));

  // The same, followed by a synced commit: then it survives the cut.
  store.FailNextCommits(1, Mode::kAfterApply);
  CHECK_FALSE(store.Commit(both).ok());
  REQUIRE(store.Commit(OnePut("c")).ok());
  lost = store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 0);
  CHECK(ValueOf(store, "a") == "changed");
}

TEST_CASE("With IgnoreSync a power cut loses acknowledged synced commits too") {
  MemoryStore base;
  FaultInjectingStore store(base);
  store.TrackUnsyncedWrites();
  store.IgnoreSync(true);
  REQUIRE(store.Commit(OnePut("a")).ok());
  auto lost = store.CutPower();
  REQUIRE(lost.ok());
  CHECK(*lost == 1);
  CHECK_FALSE(Has(store, "a"));
}

}  // namespace
}  // namespace kiln::orchestrator
