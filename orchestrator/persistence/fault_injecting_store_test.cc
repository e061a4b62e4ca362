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

}  // namespace
}  // namespace kiln::orchestrator
