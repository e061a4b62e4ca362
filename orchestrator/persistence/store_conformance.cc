#include "orchestrator/persistence/store_conformance.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "orchestrator/persistence/batch_validation.h"
#include "orchestrator/persistence/fault_injecting_store.h"

namespace kiln::orchestrator {
namespace {

using namespace std::string_literals;
using Entries = std::vector<std::pair<std::string, std::string>>;

void Put(Store& store, Table table, std::string key, std::string value) {
  WriteBatch batch;
  batch.Put(table, std::move(key), std::move(value));
  REQUIRE(store.Commit(batch).ok());
}

std::optional<std::string> Read(Store& store, Table table, std::string_view key) {
  auto value = store.Get(table, key);
  REQUIRE(value.ok());
  return *value;
}

Entries ScanEntries(Store& store, Table table, std::string_view start, std::string_view end,
                    size_t limit = 0, bool reverse = false) {
  Entries entries;
  auto visit = [&](std::string_view key, std::string_view value) {
    entries.emplace_back(std::string(key), std::string(value));
    return true;
  };
  absl::Status status = reverse ? store.ReverseScan(table, start, end, limit, visit)
                                : store.Scan(table, start, end, limit, visit);
  REQUIRE(status.ok());
  return entries;
}

std::vector<std::string> ScanKeys(Store& store, Table table, std::string_view start,
                                  std::string_view end, size_t limit = 0, bool reverse = false) {
  std::vector<std::string> keys;
  for (auto& [key, value] : ScanEntries(store, table, start, end, limit, reverse)) {
    keys.push_back(key);
  }
  return keys;
}

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// Thread bodies must not use Catch2 assertions (not thread-safe in Catch2 v2): they collect
// failures here, and the test thread asserts on them after joining.
class Failures {
 public:
  void Add(std::string failure) {
    absl::MutexLock lock(&mu_);
    if (failures_.size() < 10) failures_.push_back(std::move(failure));
  }
  std::vector<std::string> Get() {
    absl::MutexLock lock(&mu_);
    return failures_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
};

void PointOps(Store& store) {
  CHECK(Read(store, Table::kExecutions, "run-1") == std::nullopt);
  Put(store, Table::kExecutions, "run-1", "state-a");
  CHECK(Read(store, Table::kExecutions, "run-1") == "state-a");
  Put(store, Table::kExecutions, "run-1", "state-b");
  CHECK(Read(store, Table::kExecutions, "run-1") == "state-b");
  Put(store, Table::kExecutions, "run-2", "");
  CHECK(Read(store, Table::kExecutions, "run-2") == ""s);  // empty value, not absent

  WriteBatch remove;
  remove.Delete(Table::kExecutions, "run-1");
  remove.Delete(Table::kExecutions, "never-written");  // deleting an absent key is fine
  REQUIRE(store.Commit(remove).ok());
  CHECK(Read(store, Table::kExecutions, "run-1") == std::nullopt);
  CHECK(Read(store, Table::kExecutions, "run-2") == ""s);

  // An empty batch is a no-op that succeeds.
  REQUIRE(store.Commit(WriteBatch()).ok());
}

void LaterOpWins(Store& store) {
  WriteBatch batch;
  batch.Put(Table::kCurrent, "put-put", "first");
  batch.Put(Table::kCurrent, "put-put", "second");
  batch.Put(Table::kCurrent, "put-delete", "gone");
  batch.Delete(Table::kCurrent, "put-delete");
  batch.Delete(Table::kCurrent, "delete-put");
  batch.Put(Table::kCurrent, "delete-put", "back");
  batch.Put(Table::kCurrent, "put-delete-put", "1");
  batch.Delete(Table::kCurrent, "put-delete-put");
  batch.Put(Table::kCurrent, "put-delete-put", "3");
  REQUIRE(store.Commit(batch).ok());
  CHECK(Read(store, Table::kCurrent, "put-put") == "second");
  CHECK(Read(store, Table::kCurrent, "put-delete") == std::nullopt);
  CHECK(Read(store, Table::kCurrent, "delete-put") == "back");
  CHECK(Read(store, Table::kCurrent, "put-delete-put") == "3");

  // Across batches too: a delete of an existing key in the same batch as its re-put.
  WriteBatch again;
  again.Delete(Table::kCurrent, "put-put");
  again.Put(Table::kCurrent, "put-put", "third");
  REQUIRE(store.Commit(again).ok());
  CHECK(Read(store, Table::kCurrent, "put-put") == "third");
}

// A batch touching several tables and an existing key, for the atomicity checks.
WriteBatch MixedBatch() {
  WriteBatch batch;
  batch.Put(Table::kExecutions, "run-1", "new state");
  batch.Put(Table::kHistory, "run-1/event-2", "event");
  batch.Put(Table::kTasks, "task-9", "task");
  batch.Delete(Table::kCurrent, "wf-1");
  return batch;
}

void ExpectMixedBatchAbsent(Store& store) {
  CHECK(Read(store, Table::kExecutions, "run-1") == "old state");
  CHECK(Read(store, Table::kHistory, "run-1/event-2") == std::nullopt);
  CHECK(Read(store, Table::kTasks, "task-9") == std::nullopt);
  CHECK(Read(store, Table::kCurrent, "wf-1") == "run-1");
}

void Atomicity(Store& store) {
  Put(store, Table::kExecutions, "run-1", "old state");
  Put(store, Table::kCurrent, "wf-1", "run-1");

  FaultInjectingStore faulty(store);
  faulty.FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kBeforeApply);
  absl::Status failed = faulty.Commit(MixedBatch());
  CHECK(failed.code() == absl::StatusCode::kUnavailable);
  ExpectMixedBatchAbsent(store);

  // The implementation itself refuses a whole batch when one op is bad, whichever op it is.
  WriteBatch bad_table = MixedBatch();
  bad_table.Put(static_cast<Table>(kTableCount), "k", "v");
  CHECK(store.Commit(bad_table).code() == absl::StatusCode::kInvalidArgument);
  ExpectMixedBatchAbsent(store);

  WriteBatch long_key = MixedBatch();
  long_key.Put(Table::kMeta, std::string(kMaxKeyBytes + 1, 'k'), "v");
  CHECK(store.Commit(long_key).code() == absl::StatusCode::kInvalidArgument);
  ExpectMixedBatchAbsent(store);

  WriteBatch too_big = MixedBatch();
  too_big.Put(Table::kLogs, "log", std::string(kMaxCommitBytes, 'x'));
  CHECK(store.Commit(too_big).code() == absl::StatusCode::kInvalidArgument);
  ExpectMixedBatchAbsent(store);

  // The same batch, unhindered, lands whole.
  REQUIRE(faulty.Commit(MixedBatch()).ok());
  CHECK(Read(store, Table::kExecutions, "run-1") == "new state");
  CHECK(Read(store, Table::kHistory, "run-1/event-2") == "event");
  CHECK(Read(store, Table::kTasks, "task-9") == "task");
  CHECK(Read(store, Table::kCurrent, "wf-1") == std::nullopt);
}

void OutcomeUnknown(Store& store) {
  // "Outcome unknown": the caller sees an error, yet the batch is in the store, whole.
  FaultInjectingStore faulty(store);
  faulty.FailNextCommits(1, FaultInjectingStore::CommitFaultMode::kAfterApply);
  WriteBatch batch;
  batch.Put(Table::kExecutions, "run-1", "state");
  batch.Put(Table::kHistory, "run-1/1", "event");
  CHECK(faulty.Commit(batch).code() == absl::StatusCode::kUnavailable);
  CHECK(Read(store, Table::kExecutions, "run-1") == "state");
  CHECK(Read(store, Table::kHistory, "run-1/1") == "event");
}

void TablesAreIndependent(Store& store) {
  WriteBatch batch;
  for (int t = 0; t < kTableCount; ++t) {
    batch.Put(static_cast<Table>(t), "same-key", TableName(static_cast<Table>(t)));
  }
  REQUIRE(store.Commit(batch).ok());
  for (int t = 0; t < kTableCount; ++t) {
    CHECK(Read(store, static_cast<Table>(t), "same-key") == TableName(static_cast<Table>(t)));
  }
  WriteBatch remove;
  remove.Delete(Table::kTasks, "same-key");
  REQUIRE(store.Commit(remove).ok());
  CHECK(Read(store, Table::kTasks, "same-key") == std::nullopt);
  CHECK(Read(store, Table::kTimers, "same-key") == "timers");
  Put(store, Table::kHistory, "only-in-history", "x");
  CHECK(ScanKeys(store, Table::kTimers, "", "") == std::vector<std::string>{"same-key"});
  CHECK(ScanKeys(store, Table::kTasks, "", "").empty());
  CHECK(ScanKeys(store, Table::kHistory, "", "").size() == 2);
}

void FillLetters(Store& store) {
  // Committed out of order, in two batches, so order must come from the store.
  WriteBatch first;
  WriteBatch second;
  for (const char* key : {"d", "b", "f"}) first.Put(Table::kTasks, key, absl::StrCat("v", key));
  for (const char* key : {"a", "e", "c"}) second.Put(Table::kTasks, key, absl::StrCat("v", key));
  second.Put(Table::kTimers, "c2", "other table");
  REQUIRE(store.Commit(first).ok());
  REQUIRE(store.Commit(second).ok());
}

using Keys = std::vector<std::string>;

void ForwardScans(Store& store) {
  FillLetters(store);
  CHECK(ScanKeys(store, Table::kTasks, "", "") == Keys{"a", "b", "c", "d", "e", "f"});
  CHECK(ScanEntries(store, Table::kTasks, "b", "c") == Entries{{"b", "vb"}});
  CHECK(ScanKeys(store, Table::kTasks, "b", "e") == Keys{"b", "c", "d"});  // end exclusive
  CHECK(ScanKeys(store, Table::kTasks, "bb", "dd") == Keys{"c", "d"});     // bounds not keys
  CHECK(ScanKeys(store, Table::kTasks, "c", "") == Keys{"c", "d", "e", "f"});
  CHECK(ScanKeys(store, Table::kTasks, "", "c") == Keys{"a", "b"});
  CHECK(ScanKeys(store, Table::kTasks, "b", "", 2) == Keys{"b", "c"});
  CHECK(ScanKeys(store, Table::kTasks, "", "", 100) == Keys{"a", "b", "c", "d", "e", "f"});
  CHECK(ScanKeys(store, Table::kTasks, "c", "c").empty());
  CHECK(ScanKeys(store, Table::kTasks, "d", "b").empty());
  CHECK(ScanKeys(store, Table::kTasks, "g", "").empty());

  Keys seen;
  REQUIRE(store
              .Scan(Table::kTasks, "", "", 0,
                    [&](std::string_view key, std::string_view) {
                      seen.emplace_back(key);
                      return key != "c";  // stop after c
                    })
              .ok());
  CHECK(seen == Keys{"a", "b", "c"});
}

void ReverseScans(Store& store) {
  FillLetters(store);
  CHECK(ScanKeys(store, Table::kTasks, "", "", 0, true) == Keys{"f", "e", "d", "c", "b", "a"});
  CHECK(ScanEntries(store, Table::kTasks, "b", "c", 0, true) == Entries{{"b", "vb"}});
  // Starts from the largest key < end.
  CHECK(ScanKeys(store, Table::kTasks, "b", "e", 0, true) == Keys{"d", "c", "b"});
  CHECK(ScanKeys(store, Table::kTasks, "bb", "dd", 0, true) == Keys{"d", "c"});
  CHECK(ScanKeys(store, Table::kTasks, "c", "", 0, true) == Keys{"f", "e", "d", "c"});
  CHECK(ScanKeys(store, Table::kTasks, "", "c", 0, true) == Keys{"b", "a"});
  CHECK(ScanKeys(store, Table::kTasks, "", "", 2, true) == Keys{"f", "e"});
  CHECK(ScanKeys(store, Table::kTasks, "a", "e", 2, true) == Keys{"d", "c"});
  CHECK(ScanKeys(store, Table::kTasks, "c", "c", 0, true).empty());
  CHECK(ScanKeys(store, Table::kTasks, "d", "b", 0, true).empty());
  CHECK(ScanKeys(store, Table::kTasks, "", "a", 0, true).empty());

  Keys seen;
  REQUIRE(store
              .ReverseScan(Table::kTasks, "", "", 0,
                           [&](std::string_view key, std::string_view) {
                             seen.emplace_back(key);
                             return key != "d";
                           })
              .ok());
  CHECK(seen == Keys{"f", "e", "d"});
}

void BinaryKeys(Store& store) {
  // Bytes compare unsigned: 0x00 < 'a' < 0x7f < 0x80 < 0xff; a prefix sorts first.
  const Keys sorted = {"\0"s,    "\0\0"s,     "\0\xff"s, "a"s,      "a\0"s,
                       "a\0\0"s, "a\0b"s,     "a\x01"s,  "ab"s,     "\x7f"s,
                       "\x80"s,  "\xfe\xff"s, "\xff"s,   "\xff\0"s, "\xff\xff"s};
  WriteBatch batch;
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) {
    batch.Put(Table::kHistory, *it, absl::StrCat("value of ", *it, "\0\xff"s));
  }
  REQUIRE(store.Commit(batch).ok());
  CHECK(ScanKeys(store, Table::kHistory, "", "") == sorted);
  Keys reversed(sorted.rbegin(), sorted.rend());
  CHECK(ScanKeys(store, Table::kHistory, "", "", 0, true) == reversed);
  for (const std::string& key : sorted) {
    CHECK(Read(store, Table::kHistory, key) == absl::StrCat("value of ", key, "\0\xff"s));
  }
  CHECK(Read(store, Table::kHistory, "a\0c"s) == std::nullopt);
  // NUL inside bounds is honoured, not taken as a terminator.
  CHECK(ScanKeys(store, Table::kHistory, "a\0"s, "a\x01"s) == Keys{"a\0"s, "a\0\0"s, "a\0b"s});
  CHECK(ScanKeys(store, Table::kHistory, "\xff"s, "") == Keys{"\xff"s, "\xff\0"s, "\xff\xff"s});
  CHECK(ScanKeys(store, Table::kHistory, "\x7f"s, "\xff"s, 0, true) ==
        Keys{"\xfe\xff"s, "\x80"s, "\x7f"s});
}

void LargeValues(Store& store) {
  const std::string one = RandomBytes(1 << 20, 1);
  Put(store, Table::kHistory, "big", one);
  CHECK(Read(store, Table::kHistory, "big") == one);

  WriteBatch batch;  // several in one batch
  for (uint32_t i = 0; i < 4; ++i) {
    batch.Put(Table::kLogs, absl::StrCat("chunk-", i), RandomBytes(1 << 20, 10 + i));
  }
  REQUIRE(store.Commit(batch).ok());
  Entries entries = ScanEntries(store, Table::kLogs, "", "");
  REQUIRE(entries.size() == 4);
  for (uint32_t i = 0; i < 4; ++i) {
    CHECK(entries[i].first == absl::StrCat("chunk-", i));
    CHECK(entries[i].second == RandomBytes(1 << 20, 10 + i));
  }
  CHECK(store.ApproximateSize() >= (1 << 20));
}

void ConcurrentCommits(Store& store) {
  constexpr int kThreads = 8;
  constexpr int kCommitsPerThread = 25;
  constexpr size_t kCommits = kThreads * kCommitsPerThread;
  Failures failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCommitsPerThread; ++i) {
        WriteBatch batch;
        std::string key = absl::StrCat("t", t, "/", i);
        batch.Put(Table::kHistory, key, key);
        batch.Put(Table::kTimers, key, key);
        if (absl::Status s = store.Commit(batch); !s.ok()) failures.Add(s.ToString());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures.Get().empty());
  CHECK(ScanKeys(store, Table::kHistory, "", "").size() == kCommits);
  CHECK(ScanKeys(store, Table::kTimers, "", "").size() == kCommits);
  CHECK(Read(store, Table::kTimers, "t7/24") == "t7/24");
}

// A writer rewrites every key of a table with a new generation in each batch, and moves one
// marker key in another table; every scan must see one generation and exactly one marker.
void SnapshotScans(Store& store) {
  constexpr int kKeys = 40;
  constexpr int kGenerations = 150;
  auto generation_batch = [](int generation) {
    WriteBatch batch;
    for (int k = 0; k < kKeys; ++k) {
      batch.Put(Table::kVisibility, absl::StrCat("key-", 100 + k), absl::StrCat(generation));
    }
    if (generation > 0) batch.Delete(Table::kMeta, absl::StrCat("marker-", generation - 1));
    batch.Put(Table::kMeta, absl::StrCat("marker-", generation), "");
    return batch;
  };
  REQUIRE(store.Commit(generation_batch(0)).ok());

  Failures failures;
  std::atomic<bool> writer_done{false};
  absl::Notification scanning;
  std::thread writer([&] {
    scanning.WaitForNotification();  // so that the writes overlap the scans
    for (int g = 1; g <= kGenerations; ++g) {
      if (absl::Status s = store.Commit(generation_batch(g)); !s.ok()) failures.Add(s.ToString());
    }
    writer_done = true;
  });

  int scans = 0;
  int distinct_generations = 0;
  std::string last_generation;
  auto check_scan = [&](bool reverse, size_t limit) {
    std::set<std::string> generations;
    size_t count = 0;
    auto visit = [&](std::string_view, std::string_view value) {
      generations.emplace(value);
      ++count;
      return true;
    };
    absl::Status s = reverse ? store.ReverseScan(Table::kVisibility, "", "", limit, visit)
                             : store.Scan(Table::kVisibility, "", "", limit, visit);
    if (!s.ok()) failures.Add(s.ToString());
    if (count != (limit ? limit : kKeys) || generations.size() != 1) {
      failures.Add(
          absl::StrCat("scan saw ", count, " keys of ", generations.size(), " generations"));
    } else if (*generations.begin() != last_generation) {
      last_generation = *generations.begin();
      ++distinct_generations;
    }
    size_t markers = 0;
    s = store.Scan(Table::kMeta, "marker-", "marker.", 0, [&](std::string_view, std::string_view) {
      ++markers;
      return true;
    });
    if (!s.ok() || markers != 1) failures.Add(absl::StrCat("scan saw ", markers, " markers"));
  };
  // Scans run until the writer is done; the loop is bounded by the writer's fixed work.
  scanning.Notify();
  do {
    check_scan(scans % 2 == 1, scans % 3 == 2 ? 10 : 0);
    ++scans;
  } while (!writer_done);
  writer.join();
  check_scan(false, 0);
  INFO("scans: " << scans << ", generations seen: " << distinct_generations);
  CHECK(failures.Get().empty());
  CHECK(last_generation == absl::StrCat(kGenerations));
}

void ReentrantVisitor(Store& store) {
  FillLetters(store);
  // A visitor may read and write the store it is scanning (the engine loads related records
  // while paging); the scan still sees its snapshot, not the keys added behind it (the limit
  // only keeps a store without snapshots from running away).
  Keys seen;
  REQUIRE(store
              .Scan(Table::kTasks, "", "", 100,
                    [&](std::string_view key, std::string_view value) {
                      auto again = store.Get(Table::kTasks, key);
                      if (!again.ok() || *again != value) return false;
                      WriteBatch batch;
                      batch.Put(Table::kTasks, "z" + std::string(key), "added while scanning");
                      if (!store.Commit(batch).ok()) return false;
                      seen.emplace_back(key);
                      return true;
                    })
              .ok());
  CHECK(seen == Keys{"a", "b", "c", "d", "e", "f"});
  CHECK(ScanKeys(store, Table::kTasks, "z", "").size() == 6);
}

void UnknownTables(Store& store) {
  auto bad = static_cast<Table>(kTableCount);
  auto visit = [](std::string_view, std::string_view) { return true; };
  CHECK(store.Get(bad, "k").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(store.Scan(bad, "", "", 0, visit).code() == absl::StatusCode::kInvalidArgument);
  CHECK(store.ReverseScan(bad, "", "", 0, visit).code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace

// Counters: absent counts as 0, the value is 8 bytes big-endian (as the engine reads it), and
// concurrent increments hand out every value once.
void Counters(Store& store) {
  CHECK(store.FetchAdd(Table::kMeta, "counter", 5).value() == 5);
  CHECK(store.FetchAdd(Table::kMeta, "counter", 3).value() == 8);
  std::optional<std::string> stored = store.Get(Table::kMeta, "counter").value();
  REQUIRE(stored.has_value());
  CHECK(*stored == std::string("\0\0\0\0\0\0\0\x08", 8));
  CHECK(absl::IsInvalidArgument(store.FetchAdd(Table::kMeta, "counter", 0).status()));
  absl::Mutex mu;
  std::set<int64_t> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        absl::StatusOr<int64_t> value = store.FetchAdd(Table::kMeta, "shared", 1);
        absl::MutexLock lock(&mu);
        if (value.ok()) seen.insert(*value);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(seen.size() == 100);
  CHECK(*seen.rbegin() == 100);
}

void RunStoreConformance(const StoreFactory& make_store) {
  std::unique_ptr<Store> store = make_store();
  REQUIRE(store != nullptr);
  SECTION("put, get and delete") { PointOps(*store); }
  SECTION("a later op on the same key in one batch wins") { LaterOpWins(*store); }
  SECTION("a batch is all or nothing") { Atomicity(*store); }
  SECTION("an outcome-unknown failure leaves the whole batch applied") { OutcomeUnknown(*store); }
  SECTION("tables are independent") { TablesAreIndependent(*store); }
  SECTION("Scan visits [start, end) ascending, within limit, until told to stop") {
    ForwardScans(*store);
  }
  SECTION("ReverseScan visits [start, end) descending from the largest key < end") {
    ReverseScans(*store);
  }
  SECTION("binary keys with NUL and 0xff bytes order as unsigned bytes") { BinaryKeys(*store); }
  SECTION("1 MiB values round-trip") { LargeValues(*store); }
  SECTION("concurrent commits from several threads all land") { ConcurrentCommits(*store); }
  SECTION("scans see a snapshot while writers run") { SnapshotScans(*store); }
  SECTION("a scan visitor may call back into the store") { ReentrantVisitor(*store); }
  SECTION("unknown tables are refused") { UnknownTables(*store); }
  SECTION("FetchAdd increments a counter atomically") { Counters(*store); }
}

}  // namespace kiln::orchestrator
