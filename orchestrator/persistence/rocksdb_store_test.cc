#include "orchestrator/persistence/rocksdb_store.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fiber.h"
#include "orchestrator/persistence/crash_workload.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/store_conformance.h"
#include "rocksdb/db.h"
#include "tests/testutil/process.h"

#ifndef KILN_CRASH_WRITER
#error "KILN_CRASH_WRITER must name the crash writer binary"
#endif

namespace kiln::orchestrator {
namespace {

std::unique_ptr<RocksDbStore> OpenOrDie(const std::string& path,
                                        const RocksDbOptions& options = {}) {
  auto store = RocksDbStore::Open(path, options);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(*store);
}

std::optional<std::string> Read(Store& store, Table table, std::string_view key) {
  auto value = store.Get(table, key);
  REQUIRE(value.ok());
  return *value;
}

// Runs commit(t, i) for i < per_thread on each of `threads` threads at once; the calls that
// failed.
int FailedOnThreads(int threads, int per_thread,
                    const std::function<absl::Status(int t, int i)>& commit) {
  std::atomic<int> failures{0};
  std::vector<std::thread> running;
  for (int t = 0; t < threads; ++t) {
    running.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        if (!commit(t, i).ok()) ++failures;
      }
    });
  }
  for (auto& thread : running) thread.join();
  return failures.load();
}

// 4 KiB that compression cannot shrink, so sizes on disk are predictable.
std::string Incompressible(int seed) {
  std::mt19937 random(static_cast<uint32_t>(seed));
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

TEST_CASE("RocksDbStore passes the store conformance suite", "[conformance]") {
  testutil::TempDir dir;
  int opened = 0;
  RunStoreConformance([&]() -> std::unique_ptr<Store> {
    return OpenOrDie(absl::StrCat(dir.path(), "/db", opened++));
  });
}

TEST_CASE("RocksDbStore keeps one column family per table") {
  testutil::TempDir dir;
  OpenOrDie(dir.path());  // opened and closed
  std::vector<std::string> families;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.path(), &families).ok());
  std::sort(families.begin(), families.end());
  CHECK(families == std::vector<std::string>{"current", "default", "executions", "history", "logs",
                                             "meta", "retention", "tasks", "timers", "visibility"});
}

TEST_CASE("RocksDbStore keeps data across close and reopen, from memtables and SST files") {
  testutil::TempDir dir;
  // Small memtables, so that most of the data goes through flushes into SST files.
  RocksDbOptions small;
  small.write_buffer_bytes = 256 << 10;
  small.total_write_buffer_bytes = 1 << 20;
  {
    auto store = OpenOrDie(dir.path(), small);
    for (int b = 0; b < 64; ++b) {
      WriteBatch batch;
      for (int k = 0; k < 16; ++k) {
        batch.Put(Table::kHistory, absl::StrCat("key-", 1000 + b * 16 + k),
                  Incompressible(b * 16 + k));
      }
      REQUIRE(store->Commit(batch).ok());
    }
    WriteBatch batch;
    for (int t = 0; t < kTableCount; ++t) {
      batch.Put(static_cast<Table>(t), "marker", TableName(static_cast<Table>(t)));
    }
    REQUIRE(store->Commit(batch).ok());
    REQUIRE(store->Flush().ok());
    WriteBatch after_flush;  // in the WAL only
    after_flush.Put(Table::kTimers, "late", "wal only");
    after_flush.Delete(Table::kMeta, "marker");
    REQUIRE(store->Commit(after_flush).ok());
    CHECK(store->ApproximateSize() > uint64_t{4} << 20);
  }
  auto store = OpenOrDie(dir.path(), small);
  for (int t = 0; t < kTableCount; ++t) {
    auto table = static_cast<Table>(t);
    CHECK(Read(*store, table, "marker") ==
          (table == Table::kMeta ? std::nullopt : std::optional<std::string>(TableName(table))));
  }
  CHECK(Read(*store, Table::kTimers, "late") == "wal only");
  int count = 0;
  REQUIRE(store
              ->Scan(Table::kHistory, "key-", "key.", 0,
                     [&](std::string_view key, std::string_view value) {
                       CHECK(key == absl::StrCat("key-", 1000 + count));
                       CHECK(value == Incompressible(count));
                       ++count;
                       return true;
                     })
              .ok());
  CHECK(count == 64 * 16);
}

TEST_CASE("A second open of the same directory fails clearly") {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/db";
  {
    auto first = OpenOrDie(path);
    auto second = RocksDbStore::Open(path);
    REQUIRE_FALSE(second.ok());
    INFO(second.status().ToString());
    CHECK(second.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(absl::StrContains(second.status().message(), path));
    CHECK(absl::StrContains(second.status().message(), "already open"));

    // Another process is refused too (RocksDB's fcntl lock, not only its in-process table).
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const char* argv[] = {KILN_CRASH_WRITER, path.c_str(), "0", "1", "1", nullptr};
      ::execv(argv[0], const_cast<char* const*>(argv));
      ::_exit(127);
    }
    int wait_status = 0;
    REQUIRE(::waitpid(pid, &wait_status, 0) == pid);
    REQUIRE(WIFEXITED(wait_status));
    CHECK(WEXITSTATUS(wait_status) == 2);  // the writer's "already open" exit code
  }
  CHECK(RocksDbStore::Open(path).ok());  // free again once the first store is closed
}

TEST_CASE("Opening a store on a regular file fails with a status") {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/file";
  std::ofstream(path) << "not a database";
  auto store = RocksDbStore::Open(path);
  REQUIRE_FALSE(store.ok());
  CHECK(absl::StrContains(store.status().message(), path));
}

TEST_CASE("RocksDbStore opens a database holding a family it does not know") {
  testutil::TempDir dir;
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(options, dir.path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    REQUIRE(
        db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "from_the_future", &handle).ok());
    REQUIRE(db->DestroyColumnFamilyHandle(handle).ok());
    REQUIRE(db->Close().ok());
  }
  auto store = OpenOrDie(dir.path());
  WriteBatch batch;
  batch.Put(Table::kMeta, "k", "v");
  REQUIRE(store->Commit(batch).ok());
  CHECK(Read(*store, Table::kMeta, "k") == "v");
}

// Fails the calling test (from the test thread) unless `pid` is reaped by then; kills it first
// when the test bails out early, so no child outlives its test.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }
  // Reaps the child; returns its wait status.
  int Reap() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

// Starts the crash writer on `path` with its acknowledgements going to a pipe; SIGKILLs it
// after `kill_after` acknowledgements, drains the pipe, and returns the highest acknowledged
// index per thread (-1 for a thread with none).
std::vector<int64_t> RunAndKillWriter(const std::string& path, int round, int threads,
                                      int kill_after) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  // The child's write end becomes fd 3, the one descriptor it keeps across exec.
  const std::vector<std::string> args = {KILN_CRASH_WRITER, path, std::to_string(round),
                                         std::to_string(threads), "3"};
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec: the parent has threads.
    if (fds[1] == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else if (::dup2(fds[1], 3) < 0) {
      ::_exit(126);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ChildGuard child(pid);
  ::close(fds[1]);

  std::vector<int64_t> acked(threads, -1);
  int acks = 0;
  bool killed = false;
  std::string pending;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  for (;;) {
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    REQUIRE(wait_ms > 0);  // the writer neither acknowledged enough nor died in time
    pollfd pfd = {fds[0], POLLIN, 0};
    int ready = ::poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    REQUIRE(ready >= 0);
    if (ready == 0) continue;
    char buffer[4096];
    ssize_t n = ::read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    REQUIRE(n >= 0);
    if (n == 0) break;  // every write end is closed: the writer is gone
    pending.append(buffer, static_cast<size_t>(n));
    while (pending.size() >= 16) {
      int64_t ack[2];
      std::memcpy(ack, pending.data(), sizeof(ack));
      pending.erase(0, sizeof(ack));
      REQUIRE(ack[0] >= 0);
      REQUIRE(ack[0] < threads);
      REQUIRE(ack[1] == acked[ack[0]] + 1);  // each thread acknowledges in order
      acked[ack[0]] = ack[1];
      ++acks;
    }
    if (!killed && acks >= kill_after) {
      // Mid-way: the writer's threads are in the middle of further commits.
      REQUIRE(::kill(pid, SIGKILL) == 0);
      killed = true;
    }
  }
  ::close(fds[0]);
  CHECK(pending.empty());
  int status = child.Reap();
  INFO("writer wait status " << status);
  REQUIRE(killed);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);
  return acked;
}

TEST_CASE("Every acknowledged commit survives kill -9, and every batch is whole") {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/db";
  constexpr int kRounds = 3;
  constexpr int kThreads = 4;
  std::map<std::pair<int, int>, int64_t> intact;  // (round, thread) -> batches present
  for (int round = 0; round < kRounds; ++round) {
    std::vector<int64_t> acked = RunAndKillWriter(path, round, kThreads, 150 + 50 * round);
    auto store = OpenOrDie(path);
    for (int t = 0; t < kThreads; ++t) {
      auto count = crash_workload::CountIntact(*store, round, t);
      INFO("round " << round << " thread " << t << ": " << count.status().ToString());
      REQUIRE(count.ok());
      std::cout << "kill -9 round " << round << " thread " << t << ": acknowledged " << acked[t] + 1
                << ", present " << *count << "\n";
      CHECK(*count >= acked[t] + 1);  // at most the in-flight commits beyond the acks
      CHECK(*count <= acked[t] + 2);  // a thread has one commit in flight at a time
      intact[{round, t}] = *count;
    }
    // Earlier rounds are untouched by later crashes.
    for (int earlier = 0; earlier < round; ++earlier) {
      for (int t = 0; t < kThreads; ++t) {
        auto count = crash_workload::CountIntact(*store, earlier, t);
        REQUIRE(count.ok());
        CHECK(*count == intact[{earlier, t}]);
      }
    }
  }
}

// Every commit the engine makes is synced: a batch is unsynced only when it says so, and a
// synced one syncs the WAL. (A power cut's loss of the unsynced ones is modelled by
// FaultInjectingStore::CutPower, which the engine simulation runs.)
TEST_CASE("A commit syncs the WAL unless its batch says sync = false") {
  testutil::TempDir dir;
  auto opened = RocksDbStore::Open(dir.path(), RocksDbOptions());
  REQUIRE(opened.ok());
  auto store = std::move(*opened);
  auto commit = [&](const std::string& key, bool sync) {
    WriteBatch batch;
    batch.Put(Table::kMeta, key, "v");
    batch.set_sync(sync);
    REQUIRE(store->Commit(batch).ok());
    return store->Stats().wal_syncs;
  };
  const uint64_t before = store->Stats().wal_syncs;
  const uint64_t after_unsynced = commit("unsynced", false);
  CHECK(after_unsynced == before);
  CHECK(commit("synced", true) == after_unsynced + 1);
  auto value = store->Get(Table::kMeta, "unsynced");
  REQUIRE(value.ok());
  CHECK(value->has_value());
}

TEST_CASE(
    "CommitOverlapped's work runs once while its batch is written, and not for a refused batch") {
  testutil::TempDir dir;
  auto store = OpenOrDie(dir.path());
  WriteBatch batch;
  batch.Put(Table::kMeta, "overlapped", "v");
  const uint64_t before = store->Stats().wal_syncs;
  int runs = 0;
  bool synced_meanwhile = false;
  absl::Status status = store->CommitOverlapped(batch, [&] {
    ++runs;
    // The batch is queued: the writer syncs it while this still runs (a store that ran this
    // before queueing would never sync here).
    synced_meanwhile =
        testutil::WaitFor([&] { return store->Stats().wal_syncs > before; }, absl::Seconds(10));
  });
  REQUIRE(status.ok());
  CHECK(runs == 1);
  CHECK(synced_meanwhile);
  CHECK(Read(*store, Table::kMeta, "overlapped") == "v");

  WriteBatch bad;
  bad.Put(static_cast<Table>(99), "k", "v");
  CHECK(absl::IsInvalidArgument(store->CommitOverlapped(bad, [&] { ++runs; })));
  CHECK(runs == 1);
}

TEST_CASE("CommitOnCaller writes on an idle store's calling thread, never beside its writer") {
  testutil::TempDir dir;
  auto store = OpenOrDie(dir.path());
  // Alone: each on the calling thread, each synced.
  const RocksDbStats before = store->Stats();
  for (int i = 0; i < 20; ++i) {
    WriteBatch batch;
    batch.Put(Table::kMeta, absl::StrCat("alone-", i), "v");
    REQUIRE(store->CommitOnCaller(batch).ok());
  }
  const RocksDbStats alone = store->Stats();
  CHECK(alone.commits_on_caller - before.commits_on_caller == 20);
  CHECK(alone.wal_syncs - before.wal_syncs >= 20);
  CHECK(Read(*store, Table::kMeta, "alone-19") == "v");

  // While the writer has a batch: through the writer. (Retried: on a loaded machine the writer
  // may have written and synced the first batch before the second comes.)
  bool through_writer = false;
  for (int attempt = 0; attempt < 10 && !through_writer; ++attempt) {
    WriteBatch queued;
    queued.Put(Table::kMeta, absl::StrCat("queued-", attempt), "v");
    WriteBatch during;
    during.Put(Table::kMeta, absl::StrCat("during-", attempt), "v");
    const uint64_t on_caller = store->Stats().commits_on_caller;
    absl::Status during_status;
    REQUIRE(store->CommitOverlapped(queued, [&] { during_status = store->CommitOnCaller(during); })
                .ok());
    REQUIRE(during_status.ok());
    CHECK(Read(*store, Table::kMeta, absl::StrCat("during-", attempt)) == "v");
    through_writer = store->Stats().commits_on_caller == on_caller;
  }
  CHECK(through_writer);

  // Beside plain commits from other threads: every one lands, and no two threads ever write at
  // once (RocksDB would then write one's batch for the other: writes_done_by_other).
  constexpr int kThreads = 8;
  constexpr int kCommitsPerThread = 40;
  const RocksDbStats mixed_before = store->Stats();
  REQUIRE(FailedOnThreads(kThreads, kCommitsPerThread, [&](int t, int i) {
            WriteBatch batch;
            batch.Put(Table::kHistory, absl::StrCat("m", t, "/", i), "v");
            return t % 2 == 0 ? store->CommitOnCaller(batch) : store->Commit(batch);
          }) == 0);
  const RocksDbStats mixed = store->Stats();
  CHECK(mixed.commits - mixed_before.commits == uint64_t{kThreads} * kCommitsPerThread);
  CHECK(mixed.writes_done_by_other == mixed_before.writes_done_by_other);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kCommitsPerThread; ++i) {
      CHECK(Read(*store, Table::kHistory, absl::StrCat("m", t, "/", i)) == "v");
    }
  }
}

TEST_CASE("Concurrent commits share WAL syncs (group commit)") {
  // Kiln groups commits itself by default; the other row is RocksDB's own write group.
  const bool kiln_grouping = GENERATE(true, false);
  CAPTURE(kiln_grouping);
  testutil::TempDir dir;
  RocksDbOptions options;
  options.group_commit = kiln_grouping;
  auto opened = RocksDbStore::Open(dir.path(), options);
  REQUIRE(opened.ok());
  auto store = std::move(*opened);
  constexpr int kThreads = 16;
  constexpr int kCommitsPerThread = 50;

  // Baseline: one thread alone syncs once per commit.
  RocksDbStats before = store->Stats();
  for (int i = 0; i < kCommitsPerThread; ++i) {
    WriteBatch batch;
    batch.Put(Table::kMeta, absl::StrCat("serial-", i), "v");
    REQUIRE(store->Commit(batch).ok());
  }
  RocksDbStats serial = store->Stats();
  uint64_t serial_syncs = serial.wal_syncs - before.wal_syncs;
  std::cout << "group commit: 1 thread, " << kCommitsPerThread << " commits, " << serial_syncs
            << " WAL syncs\n";
  CHECK(serial_syncs >= kCommitsPerThread);

  REQUIRE(FailedOnThreads(kThreads, kCommitsPerThread, [&](int t, int i) {
            WriteBatch batch;
            batch.Put(Table::kHistory, absl::StrCat("t", t, "/", i), std::string(100, 'x'));
            batch.Put(Table::kExecutions, absl::StrCat("t", t), absl::StrCat(i));
            return store->Commit(batch);
          }) == 0);
  RocksDbStats after = store->Stats();
  const uint64_t commits = after.commits - serial.commits;
  const uint64_t syncs = after.wal_syncs - serial.wal_syncs;
  const uint64_t groups = after.groups - serial.groups;
  const uint64_t by_other = after.writes_done_by_other - serial.writes_done_by_other;
  std::cout << "group commit (" << (kiln_grouping ? "Kiln" : "RocksDB") << "): " << kThreads
            << " threads, " << commits << " commits, " << syncs << " WAL syncs, " << groups
            << " Kiln groups, " << by_other << " writes done by another thread's sync\n";
  CHECK(commits == uint64_t{kThreads} * kCommitsPerThread);
  CHECK(syncs < commits);
  if (kiln_grouping) {
    // One writer at a time: RocksDB never writes for another thread; our groups do.
    CHECK(groups < commits);
    CHECK(syncs == groups);
    CHECK(by_other == 0);
  } else {
    CHECK(groups == 0);
    CHECK(by_other > 0);
  }
  // Every thread's every commit is there, each one whole.
  for (int t = 0; t < kThreads; ++t) {
    auto last = store->Get(Table::kExecutions, absl::StrCat("t", t));
    REQUIRE(last.ok());
    CHECK(*last == std::optional<std::string>(absl::StrCat(kCommitsPerThread - 1)));
    for (int i = 0; i < kCommitsPerThread; ++i) {
      auto event = store->Get(Table::kHistory, absl::StrCat("t", t, "/", i));
      REQUIRE(event.ok());
      CHECK(event->has_value());
    }
  }
}

TEST_CASE("A batch the store refuses fails alone, while others commit around it") {
  testutil::TempDir dir;
  auto store = OpenOrDie(dir.path());
  std::atomic<int> failures{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        WriteBatch batch;
        batch.Put(Table::kMeta, absl::StrCat("ok-", t, "-", i), "v");
        if (!store->Commit(batch).ok()) ++failures;
        WriteBatch bad;
        bad.Put(static_cast<Table>(99), "k", "v");
        if (absl::IsInvalidArgument(store->Commit(bad))) ++refused;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(refused == 8 * 20);
  for (int t = 0; t < 8; ++t) {
    for (int i = 0; i < 20; ++i) {
      auto value = store->Get(Table::kMeta, absl::StrCat("ok-", t, "-", i));
      REQUIRE(value.ok());
      CHECK(value->has_value());
    }
  }
}

TEST_CASE("Commits of fibers on one thread park and share a sync") {
  testutil::TempDir dir;
  auto store = OpenOrDie(dir.path());
  constexpr int kFibers = 16;
  const RocksDbStats before = store->Stats();
  std::atomic<int> failures{0};
  {
    // One thread: were a commit to block it, the next fiber could not queue its batch until
    // the first was synced, and every commit would sync alone.
    fiber::Pool pool(/*threads=*/1, /*fibers=*/kFibers, /*max_queued=*/kFibers);
    for (int f = 0; f < kFibers; ++f) {
      REQUIRE(pool.TrySubmit([&, f] {
        WriteBatch batch;
        batch.Put(Table::kMeta, absl::StrCat("fiber-", f), "v");
        fiber::ParkScope park;
        if (!store->Commit(batch).ok()) ++failures;
      }));
    }
  }  // Runs every fiber to the end.
  CHECK(failures == 0);
  const RocksDbStats after = store->Stats();
  CHECK(after.commits - before.commits == kFibers);
  CHECK(after.groups - before.groups < kFibers / 2);
  for (int f = 0; f < kFibers; ++f) {
    auto value = store->Get(Table::kMeta, absl::StrCat("fiber-", f));
    REQUIRE(value.ok());
    CHECK(value->has_value());
  }
}

}  // namespace
}  // namespace kiln::orchestrator
