#include "orchestrator/persistence/postgres_store.h"

#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/fiber.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/rocksdb_store.h"
#include "orchestrator/persistence/store_conformance.h"
#include "tests/testutil/postgres.h"
#include "tests/testutil/process.h"

namespace kiln::orchestrator {
namespace {

using testutil::PostgresCluster;

// A cluster for this test case, or null (with a warning saying why) where PostgreSQL cannot
// run here: the test case then checks nothing.
std::unique_ptr<PostgresCluster> StartClusterOrSkip() {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster = PostgresCluster::Start();
  if (absl::IsFailedPrecondition(cluster.status())) {
    if (testutil::PostgresRequired()) FAIL("PostgreSQL required: " << cluster.status().message());
    WARN("skipped: PostgreSQL cannot start here: " << cluster.status().message());
    return nullptr;
  }
  INFO(cluster.status().ToString());
  REQUIRE(cluster.ok());
  return std::move(*cluster);
}

std::unique_ptr<PostgresStore> OpenStore(const std::string& conninfo,
                                         const PostgresStoreOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::Open(conninfo, options);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(*store);
}

std::vector<std::string> AllKeys(Store& store, Table table, bool reverse = false) {
  std::vector<std::string> keys;
  auto visit = [&](std::string_view key, std::string_view) {
    keys.emplace_back(key);
    return true;
  };
  absl::Status status =
      reverse ? store.ReverseScan(table, "", "", 0, visit) : store.Scan(table, "", "", 0, visit);
  REQUIRE(status.ok());
  return keys;
}

void Sql(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  PGresult* result = PQexec(conn, sql.c_str());
  INFO(PQerrorMessage(conn));
  CHECK(PQresultStatus(result) == PGRES_COMMAND_OK);
  PQclear(result);
  PQfinish(conn);
}

// A session of its own, as another process would hold (one the test can leave mid-transaction).
class RawSession {
 public:
  explicit RawSession(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    REQUIRE(PQstatus(conn_) == CONNECTION_OK);
  }
  ~RawSession() { PQfinish(conn_); }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  // Runs `sql`; returns "" on success, else the error.
  std::string Exec(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    ExecStatusType status = PQresultStatus(result);
    std::string error = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
                            ? ""
                            : std::string(PQerrorMessage(conn_)) + " ";
    PQclear(result);
    return error;
  }
  // The first column of the first row of `sql`, or "" when none.
  std::string Value(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    std::string value = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0
                            ? PQgetvalue(result, 0, 0)
                            : "";
    PQclear(result);
    return value;
  }

 private:
  PGconn* conn_;
};

WriteBatch FencedPut(int32_t shard, int64_t range, const std::string& key) {
  WriteBatch batch;
  batch.AddFence({shard, range});
  batch.Put(Table::kHistory, key, "v");
  return batch;
}

TEST_CASE("PostgresStore passes the store conformance suite", "[conformance]") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  int databases = 0;
  RunStoreConformance([&]() -> std::unique_ptr<Store> {
    absl::StatusOr<std::string> conninfo =
        cluster->CreateDatabase(absl::StrCat("conformance_", ++databases));
    REQUIRE(conninfo.ok());
    return OpenStore(*conninfo);
  });
}

TEST_CASE("PostgresStore orders keys as RocksDB does: unsigned bytes and a prefix first") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo());
  testutil::TempDir dir;
  auto rocksdb = RocksDbStore::Open(dir.path() + "/db");
  REQUIRE(rocksdb.ok());
  using namespace std::string_literals;
  const std::vector<std::string> keys = {
      ""s,        "\x00"s, "\x00\x00"s, "\x00\xff"s, "\x01"s,        "a"s,
      "a\x00"s,   "a\xff", "ab"s,       "\x7f"s,     "\x80"s,        "\x80\x00"s,
      "\xfe\xff", "\xff"s, "\xff\x00"s, "\xff\xff"s, "\xff\xff\xff"s};
  WriteBatch batch;
  for (const std::string& key : keys) batch.Put(Table::kHistory, key, "v");
  REQUIRE(store->Commit(batch).ok());
  REQUIRE((*rocksdb)->Commit(batch).ok());

  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());  // std::string compares as unsigned char
  CHECK(AllKeys(*store, Table::kHistory) == sorted);
  CHECK(AllKeys(**rocksdb, Table::kHistory) == sorted);
  std::vector<std::string> reversed(sorted.rbegin(), sorted.rend());
  CHECK(AllKeys(*store, Table::kHistory, /*reverse=*/true) == reversed);
  CHECK(AllKeys(**rocksdb, Table::kHistory, /*reverse=*/true) == reversed);
}

TEST_CASE("PostgresStore keeps its data and schema across reopening and refuses a newer schema") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  {
    auto store = OpenStore(cluster->ConnInfo());
    WriteBatch batch;
    batch.Put(Table::kMeta, "kept", "yes");
    REQUIRE(store->Commit(batch).ok());
  }
  {
    auto store = OpenStore(cluster->ConnInfo());
    CHECK(store->Get(Table::kMeta, "kept")->value() == "yes");
  }
  Sql(cluster->ConnInfo(), "UPDATE kiln_schema SET version = 2");
  absl::StatusOr<std::unique_ptr<PostgresStore>> newer = PostgresStore::Open(cluster->ConnInfo());
  REQUIRE(absl::IsFailedPrecondition(newer.status()));
  CHECK_THAT(std::string(newer.status().message()),
             Catch::Contains("version 2") && Catch::Contains("newer Kiln"));
}

TEST_CASE("PostgresStore commits unsynced batches and batches of several round trips") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo());
  WriteBatch unsynced;
  unsynced.set_sync(false);  // SET LOCAL synchronous_commit = off inside the transaction
  unsynced.Put(Table::kLogs, "unsynced", "v");
  REQUIRE(store->Commit(unsynced).ok());
  CHECK(store->Get(Table::kLogs, "unsynced")->value() == "v");

  // 2.5 round trips' worth of ops in one transaction, the last op on a key winning.
  constexpr size_t kOps = PostgresStore::kOpsPerRoundTrip * 5 / 2;
  WriteBatch large;
  for (size_t i = 0; i < kOps; ++i) large.Put(Table::kTasks, absl::StrCat("k", 10000 + i), "1");
  large.Delete(Table::kTasks, "k10000");
  large.Put(Table::kTasks, "k10001", "2");
  REQUIRE(store->Commit(large).ok());
  CHECK(AllKeys(*store, Table::kTasks).size() == kOps - 1);
  CHECK(store->Get(Table::kTasks, "k10001")->value() == "2");
}

TEST_CASE("PostgresStore's CommitOverlapped runs its work while the batch is written") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo());
  auto observer = OpenStore(cluster->ConnInfo());
  WriteBatch batch;
  batch.Put(Table::kMeta, "overlapped", "v");
  int runs = 0;
  bool landed_meanwhile = false;
  REQUIRE(store
              ->CommitOverlapped(batch,
                                 [&] {
                                   ++runs;
                                   // Queued: the writer commits it while this still runs.
                                   landed_meanwhile = testutil::WaitFor(
                                       [&] {
                                         auto value = observer->Get(Table::kMeta, "overlapped");
                                         return value.ok() && value->has_value();
                                       },
                                       absl::Seconds(10));
                                 })
              .ok());
  CHECK(runs == 1);
  CHECK(landed_meanwhile);
  WriteBatch bad;
  bad.Put(static_cast<Table>(99), "k", "v");
  CHECK(absl::IsInvalidArgument(store->CommitOverlapped(bad, [&] { ++runs; })));
  CHECK(runs == 1);
}

TEST_CASE("PostgresStore on an unreachable server fails to open with kUnavailable") {
  auto opened = PostgresStore::Open(
      absl::StrCat("host=127.0.0.1 port=", testutil::FreePort(), " connect_timeout=2"));
  CHECK(absl::IsUnavailable(opened.status()));
}

TEST_CASE("A shard takeover fences the old owner out: its next commit fails and applies nothing") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto a = OpenStore(cluster->ConnInfo());
  auto b = OpenStore(cluster->ConnInfo());
  absl::StatusOr<int64_t> range_a = a->AcquireShard(7, "node-a");
  REQUIRE(range_a.ok());
  CHECK(*range_a == 1);
  absl::Status first = a->Commit(FencedPut(7, *range_a, "a-1"));
  INFO(first.ToString());
  REQUIRE(first.ok());

  absl::StatusOr<int64_t> range_b = b->AcquireShard(7, "node-b");
  REQUIRE(range_b.ok());
  CHECK(*range_b == *range_a + 1);
  absl::Status stale = a->Commit(FencedPut(7, *range_a, "a-2"));
  CHECK(absl::IsFailedPrecondition(stale));
  CHECK_THAT(std::string(stale.message()), Catch::Contains("shard 7 is at range 2"));
  CHECK_FALSE(a->Get(Table::kHistory, "a-2")->has_value());
  CHECK(a->Health().writable);  // a fenced commit is no outage

  REQUIRE(b->Commit(FencedPut(7, *range_b, "b-1")).ok());
  CHECK(a->Get(Table::kHistory, "b-1")->has_value());
  // A shard nobody acquired fences everything out; an unfenced batch is not checked.
  CHECK(absl::IsFailedPrecondition(a->Commit(FencedPut(99, 1, "nobody"))));
  WriteBatch unfenced;
  unfenced.Put(Table::kHistory, "unfenced", "v");
  CHECK(a->Commit(unfenced).ok());
}

TEST_CASE("A commit in flight under the old range finishes before the takeover") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto a = OpenStore(cluster->ConnInfo());
  auto b = OpenStore(cluster->ConnInfo());
  absl::StatusOr<int64_t> range_a = a->AcquireShard(3, "node-a");
  REQUIRE(range_a.ok());

  // A's transaction, stopped between its fence check and its COMMIT.
  RawSession in_flight(cluster->ConnInfo());
  REQUIRE(in_flight.Exec("BEGIN") == "");
  REQUIRE(in_flight.Exec(absl::StrCat("SELECT kiln_check_fence(3, ", *range_a, ")")) == "");
  REQUIRE(in_flight.Exec("INSERT INTO kiln_history VALUES ('in-flight', 'v')") == "");

  std::atomic<bool> taken{false};
  absl::StatusOr<int64_t> range_b;
  std::thread takeover([&] {
    range_b = b->AcquireShard(3, "node-b");
    taken = true;
  });
  // The takeover waits on the shard row's lock (seen by the server), not on time.
  RawSession observer(cluster->ConnInfo());
  CHECK(testutil::WaitFor(
      [&] {
        return observer.Value(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                   "'Lock' AND query LIKE 'INSERT INTO kiln_shards%'") == "1";
      },
      absl::Seconds(30)));
  CHECK_FALSE(taken);
  REQUIRE(in_flight.Exec("COMMIT") == "");
  takeover.join();
  REQUIRE(range_b.ok());
  CHECK(*range_b == *range_a + 1);
  CHECK(a->Get(Table::kHistory, "in-flight")->has_value());  // landed, before the takeover
  CHECK(absl::IsFailedPrecondition(a->Commit(FencedPut(3, *range_a, "after"))));
  CHECK_FALSE(a->Get(Table::kHistory, "after")->has_value());
}

// A paused owner (a stopped process) inside an open transaction holds its shard row only until
// the server ends its session (idle_in_transaction_session_timeout; the store sets 30 s, this
// session 1 s).
TEST_CASE("A paused owner inside a transaction cannot block a takeover beyond its timeout") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto b = OpenStore(cluster->ConnInfo());
  REQUIRE(b->AcquireShard(5, "node-a").ok());
  RawSession paused(cluster->ConnInfo());
  REQUIRE(paused.Exec("SET idle_in_transaction_session_timeout = '1s'") == "");
  REQUIRE(paused.Exec("BEGIN") == "");
  REQUIRE(paused.Exec("SELECT kiln_check_fence(5, 1)") == "");

  absl::Time began = absl::Now();
  absl::StatusOr<int64_t> range_b = b->AcquireShard(5, "node-b");
  REQUIRE(range_b.ok());
  CHECK(*range_b == 2);
  CHECK(absl::Now() - began < absl::Seconds(20));
  // The paused session is gone: what it would write now cannot land.
  CHECK_FALSE(paused.Exec("INSERT INTO kiln_history VALUES ('late', 'v')").empty());
  CHECK_FALSE(b->Get(Table::kHistory, "late")->has_value());
}

// A writer commits numbered batches of kKeysPerBatch keys while the server is killed
// (pg_ctl stop -m immediate) and started again. Each batch is acknowledged, or fails; every
// acknowledged batch must be there whole after the restart and none partly, and the writer
// must get through again once the server is back.
TEST_CASE("PostgreSQL killed during commits: Commit fails cleanly and resumes after a restart") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo());
  constexpr int kKeysPerBatch = 5;

  absl::Mutex mu;
  std::vector<int> acknowledged;
  std::vector<std::string> unexpected_errors;
  int failures = 0;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      WriteBatch batch;
      for (int k = 0; k < kKeysPerBatch; ++k) {
        batch.Put(Table::kHistory, absl::StrCat("batch-", 100000 + i, "/", k), "x");
      }
      absl::Status status = store->Commit(batch);
      absl::MutexLock lock(&mu);
      if (status.ok()) {
        acknowledged.push_back(i);
      } else {
        ++failures;
        if (!absl::IsUnavailable(status)) unexpected_errors.push_back(status.ToString());
      }
    }
  });
  auto acknowledged_count = [&] {
    absl::MutexLock lock(&mu);
    return acknowledged.size();
  };
  auto failure_count = [&] {
    absl::MutexLock lock(&mu);
    return failures;
  };

  CHECK(testutil::WaitFor([&] { return acknowledged_count() >= 30; }, absl::Seconds(60)));
  REQUIRE(cluster->Kill().ok());
  CHECK(testutil::WaitFor([&] { return failure_count() >= 3; }, absl::Seconds(60)));
  const size_t before_restart = acknowledged_count();
  StoreHealth down = store->Health();
  CHECK_FALSE(down.writable);
  CHECK_FALSE(down.reason.empty());

  REQUIRE(cluster->Restart().ok());
  CHECK(testutil::WaitFor([&] { return acknowledged_count() >= before_restart + 30; },
                          absl::Seconds(60)));
  stop = true;
  writer.join();
  CHECK(store->Health().writable);

  absl::MutexLock lock(&mu);
  INFO("acknowledged " << acknowledged.size() << ", failed " << failures);
  CHECK(unexpected_errors.empty());
  std::map<int, int> keys_per_batch;
  for (const std::string& key : AllKeys(*store, Table::kHistory)) {
    ++keys_per_batch[std::stoi(key.substr(6, 6)) - 100000];
  }
  for (const auto& [batch, keys] : keys_per_batch) {
    INFO("batch " << batch);
    CHECK(keys == kKeysPerBatch);  // never partly applied
  }
  for (int batch : acknowledged) {
    INFO("acknowledged batch " << batch);
    CHECK(keys_per_batch.count(batch) == 1);
  }
}

PostgresStoreOptions Owner(const std::string& owner) {
  PostgresStoreOptions options;
  options.owner = owner;
  return options;
}

WriteBatch Put(const std::string& key) {
  WriteBatch batch;
  batch.Put(Table::kHistory, key, "v");
  return batch;
}

// Sessions of the cluster waiting on a lock (a prepared statement's query text is its whole
// PREPARE string, so the count is of every waiter).
std::string LockWaiters(RawSession& observer) {
  return observer.Value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'");
}

TEST_CASE("The group-commit writer sends concurrent commits in shared transactions") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo(), Owner("node-a"));
  constexpr int kThreads = 16;
  constexpr int kCommitsEach = 30;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCommitsEach; ++i) {
        if (!store->Commit(Put(absl::StrCat("k", t, "/", i))).ok()) ++failed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(failed == 0);
  CHECK(AllKeys(*store, Table::kHistory).size() == kThreads * kCommitsEach);
  PostgresStore::Stats stats = store->stats();
  INFO("commits " << stats.commits << ", groups " << stats.groups);
  CHECK(stats.commits == kThreads * kCommitsEach);
  CHECK(stats.groups < stats.commits);  // some transactions carried several commits
}

// The group's transaction fails at the stale fence; the writer then sends each member alone, so
// only the fenced batch fails and the others commit.
TEST_CASE("In a group a batch whose fence fails fails alone and the others commit") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  PostgresStoreOptions one_writer;
  one_writer.writer_threads = 1;
  auto store = OpenStore(cluster->ConnInfo(), one_writer);
  REQUIRE(store->AcquireShard(9, "node-a").ok());
  REQUIRE(store->AcquireShard(8, "node-a").ok());
  REQUIRE(store->AcquireShard(8, "node-b").ok());  // range 1 of shard 8 is stale now

  // The writer's first transaction waits on shard 9's row (locked by another session), so
  // the next commits queue up behind it and go as one group.
  RawSession locker(cluster->ConnInfo());
  REQUIRE(locker.Exec("BEGIN") == "");
  REQUIRE(locker.Exec("SELECT * FROM kiln_shards WHERE shard_id = 9 FOR UPDATE") == "");
  std::vector<std::thread> threads;
  absl::Mutex mu;
  std::map<std::string, absl::Status> results;
  auto commit = [&](std::string key, std::optional<ShardFence> fence) {
    threads.emplace_back([&, key, fence] {
      WriteBatch batch = Put(key);
      if (fence) batch.AddFence(*fence);
      absl::Status status = store->Commit(batch);
      absl::MutexLock lock(&mu);
      results[key] = status;
    });
  };
  commit("first", ShardFence{9, 1});
  RawSession observer(cluster->ConnInfo());
  REQUIRE(testutil::WaitFor([&] { return LockWaiters(observer) == "1"; }, absl::Seconds(30)));
  commit("good-1", std::nullopt);
  commit("stale", ShardFence{8, 1});
  commit("good-2", ShardFence{9, 1});
  REQUIRE(testutil::WaitFor([&] { return store->stats().commits == 4; }, absl::Seconds(30)));
  REQUIRE(locker.Exec("ROLLBACK") == "");
  for (std::thread& t : threads) t.join();

  CHECK(results["first"].ok());
  CHECK(results["good-1"].ok());
  CHECK(results["good-2"].ok());
  CHECK(absl::IsFailedPrecondition(results["stale"]));
  CHECK(store->stats().group_retries == 1);
  CHECK(AllKeys(*store, Table::kHistory) == std::vector<std::string>{"first", "good-1", "good-2"});
}

// Two store instances on one database, as two orchestrator processes would be: B's Open takes the
// store's shard over while A's commit is in flight (waiting on the shard row). A's commit lands
// before the takeover; after it A writes nothing, and says why.
TEST_CASE(
    "A second owner takes the store over: the first owner's commit in flight lands and "
    "nothing of its after") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto a = OpenStore(cluster->ConnInfo(), Owner("node-a"));
  CHECK(a->range_id() == 1);
  REQUIRE(a->Commit(Put("a-1")).ok());

  RawSession locker(cluster->ConnInfo());
  REQUIRE(locker.Exec("BEGIN") == "");
  REQUIRE(locker.Exec("SELECT * FROM kiln_shards WHERE shard_id = 0 FOR UPDATE") == "");
  absl::Status in_flight;
  std::thread commit([&] { in_flight = a->Commit(Put("a-in-flight")); });
  RawSession observer(cluster->ConnInfo());
  REQUIRE(testutil::WaitFor([&] { return LockWaiters(observer) == "1"; }, absl::Seconds(30)));
  std::unique_ptr<PostgresStore> b;
  std::thread takeover([&] { b = OpenStore(cluster->ConnInfo(), Owner("node-b")); });
  REQUIRE(testutil::WaitFor([&] { return LockWaiters(observer) == "2"; }, absl::Seconds(30)));
  REQUIRE(locker.Exec("ROLLBACK") == "");
  commit.join();
  takeover.join();
  CHECK(in_flight.ok());
  REQUIRE(b != nullptr);
  CHECK(b->range_id() == 2);

  absl::Status after = a->Commit(Put("a-after"));
  CHECK(absl::IsUnavailable(after));
  CHECK_THAT(std::string(after.message()), Catch::Contains("another orchestrator"));
  CHECK_FALSE(a->Health().writable);
  CHECK_THAT(a->Health().reason, Catch::Contains("took this database over"));
  CHECK(absl::IsUnavailable(a->FetchAdd(Table::kMeta, "counter", 1).status()));
  CHECK(a->Get(Table::kHistory, "a-1")->has_value());  // reads go on

  REQUIRE(b->Commit(Put("b-1")).ok());
  CHECK(AllKeys(*b, Table::kHistory) == std::vector<std::string>{"a-1", "a-in-flight", "b-1"});
  CHECK(b->Health().writable);
}

// A process stopped (SIGSTOP) inside an open transaction that holds the store's shard row: the
// server ends its session after the idle-in-transaction timeout (2 s here; the store sets 30 s),
// and the takeover goes through then.
TEST_CASE(
    "A SIGSTOPped owner inside an open transaction blocks a takeover only until its "
    "timeout") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  const std::string conninfo = cluster->ConnInfo();
  {
    auto first = OpenStore(conninfo, Owner("node-a"));  // creates the shard row
  }
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  // Forked before this process has threads of its own (the stores above are closed).
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    PGconn* conn = PQconnectdb(conninfo.c_str());
    PQclear(PQexec(conn, "SET idle_in_transaction_session_timeout = '2s'"));
    PQclear(PQexec(conn, "BEGIN"));
    PGresult* fenced = PQexec(conn, "SELECT kiln_check_fence(0, 1)");
    char ok = PQresultStatus(fenced) == PGRES_TUPLES_OK ? '1' : '0';
    (void)!::write(ready[1], &ok, 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char ok = 0;
  REQUIRE(::read(ready[0], &ok, 1) == 1);
  ::close(ready[0]);
  ::kill(child, SIGSTOP);
  CHECK(ok == '1');

  absl::Time began = absl::Now();
  auto b = OpenStore(conninfo, Owner("node-b"));
  absl::Duration took = absl::Now() - began;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  CHECK(b->range_id() == 2);
  CHECK(took >= absl::Milliseconds(1500));  // it did wait for the stopped owner
  CHECK(took < absl::Seconds(20));
  CHECK(b->Commit(Put("b-1")).ok());
}

// COMMIT sent, and the connection lost before its answer (the backend SIGKILLed while a deferred
// trigger holds the COMMIT): the outcome is unknown. The store renews its claim before the next
// read, so that what it reads is final, and commits go on with the new range.
TEST_CASE("A commit whose outcome is unknown makes the owner renew its range before reloading") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo(), Owner("node-a"));
  const int64_t range = store->range_id();
  Sql(cluster->ConnInfo(),
      "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "PERFORM pg_sleep(60); RETURN NULL; END $$;"
      "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON kiln_history "
      "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.k = 'slow'::bytea) "
      "EXECUTE FUNCTION slow_commit()");
  absl::Status lost;
  std::thread commit([&] { lost = store->Commit(Put("slow")); });
  RawSession observer(cluster->ConnInfo());
  std::string backend;
  REQUIRE(testutil::WaitFor(
      [&] {
        backend = observer.Value("SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'");
        return !backend.empty();
      },
      absl::Seconds(30)));
  ::kill(std::stoi(backend), SIGKILL);  // the server restarts its sessions (crash recovery)
  commit.join();
  INFO(lost.ToString());
  CHECK(absl::IsUnavailable(lost));
  CHECK_THAT(std::string(lost.message()), Catch::Contains("outcome unknown"));

  // The next read renews the claim first (once the server accepts connections again).
  absl::StatusOr<std::optional<std::string>> reloaded;
  CHECK(testutil::WaitFor(
      [&] {
        reloaded = store->Get(Table::kHistory, "slow");
        return reloaded.ok();
      },
      absl::Seconds(60)));
  CHECK_FALSE(reloaded->has_value());
  CHECK(store->range_id() == range + 1);
  CHECK(store->stats().renewals == 1);
  CHECK(testutil::WaitFor([&] { return store->Commit(Put("next")).ok(); }, absl::Seconds(30)));
  CHECK(store->Health().writable);
}

TEST_CASE("FetchAdd is atomic across store instances and reads the engine's counters") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto a = OpenStore(cluster->ConnInfo(), Owner("node-a"));
  auto b = OpenStore(cluster->ConnInfo());
  // A counter written as the engine writes it (8 bytes, big-endian).
  std::string seven;
  keys::AppendBigEndian64(&seven, 7);
  WriteBatch seed;
  seed.Put(Table::kMeta, "seeded", seven);
  REQUIRE(b->Commit(seed).ok());
  CHECK(b->FetchAdd(Table::kMeta, "seeded", 3).value() == 10);
  CHECK(b->FetchAdd(Table::kMeta, "fresh", 5).value() == 5);

  absl::Mutex mu;
  std::set<int64_t> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Store& store = t % 2 == 0 ? static_cast<Store&>(*a) : static_cast<Store&>(*b);
      for (int i = 0; i < 25; ++i) {
        absl::StatusOr<int64_t> value = store.FetchAdd(Table::kMeta, "shared", 1);
        absl::MutexLock lock(&mu);
        if (value.ok()) seen.insert(*value);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(seen.size() == 200);  // no value handed out twice
  CHECK(*seen.rbegin() == 200);
  auto stored = a->Get(Table::kMeta, "shared");
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  CHECK(keys::ReadBigEndian64(**stored) == 200);
}

// Whether a session waits for a lock on `table` (a read the server holds up).
bool WaitsOnTable(RawSession& observer, const std::string& table, int sessions = 1) {
  return testutil::WaitFor(
      [&] {
        return observer.Value(absl::StrCat("SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                                           "relation = '",
                                           table, "'::regclass")) == absl::StrCat(sessions);
      },
      absl::Seconds(30));
}

// Fills the store's pool with `n` connections: n reads wait together on a locked table, each on
// a connection of its own. (A new connection prepares its statements, which waits for a table
// lock as a read does: the tests below lock a table after this.)
void WarmPool(Store& store, const std::string& conninfo, int n) {
  RawSession locker(conninfo);
  RawSession observer(conninfo);
  REQUIRE(locker.Exec("BEGIN") == "");
  REQUIRE(locker.Exec("LOCK TABLE kiln_logs IN ACCESS EXCLUSIVE MODE") == "");
  std::vector<std::thread> readers;
  for (int i = 0; i < n; ++i) {
    readers.emplace_back([&] { CHECK(store.Get(Table::kLogs, "warm").ok()); });
  }
  CHECK(WaitsOnTable(observer, "kiln_logs", n));
  CHECK(locker.Exec("ROLLBACK") == "");
  for (std::thread& reader : readers) reader.join();
}

// Issue 24: a fiber waiting on the database parks; it never blocks its thread. A second session
// holds kiln_meta locked, so a read of it waits in the server. The pool has one thread: the other
// fiber runs only if the waiting one parked.
TEST_CASE(
    "A read from a fiber parks while the server holds it up and its thread runs other fibers") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo());
  WriteBatch setup;
  setup.Put(Table::kMeta, "held", "1");
  setup.Put(Table::kExecutions, "free", "2");
  REQUIRE(store->Commit(setup).ok());
  WarmPool(*store, cluster->ConnInfo(), PostgresStoreOptions().max_connections);
  RawSession locker(cluster->ConnInfo());
  RawSession observer(cluster->ConnInfo());
  REQUIRE(locker.Exec("BEGIN") == "");
  REQUIRE(locker.Exec("LOCK TABLE kiln_meta IN ACCESS EXCLUSIVE MODE") == "");

  absl::Notification held_done;
  absl::Notification others_done;
  absl::StatusOr<std::optional<std::string>> held;
  absl::StatusOr<std::optional<std::string>> got;
  std::vector<std::string> scanned;
  absl::Status committed;
  absl::StatusOr<int64_t> counter;
  std::thread::id held_thread;
  std::thread::id others_thread;
  bool others_ran = false;
  {
    fiber::Pool pool(/*threads=*/1, /*fibers=*/4, /*max_queued=*/16);
    REQUIRE(pool.TrySubmit([&] {
      held_thread = std::this_thread::get_id();
      fiber::ParkScope park;
      held = store->Get(Table::kMeta, "held");
      held_done.Notify();
    }));
    CHECK(WaitsOnTable(observer, "kiln_meta"));
    REQUIRE(pool.TrySubmit([&] {
      others_thread = std::this_thread::get_id();
      fiber::ParkScope park;
      got = store->Get(Table::kExecutions, "free");
      scanned = AllKeys(*store, Table::kExecutions);
      WriteBatch batch;
      batch.Put(Table::kExecutions, "written", "3");
      committed = store->Commit(batch);
      counter = store->FetchAdd(Table::kTasks, "counter", 5);
      others_done.Notify();
    }));
    others_ran = others_done.WaitForNotificationWithTimeout(absl::Seconds(20));
    CHECK(others_ran);
    CHECK_FALSE(held_done.HasBeenNotified());  // still waiting in the server
    REQUIRE(locker.Exec("ROLLBACK") == "");    // (also rescues a blocked thread, should it be)
    CHECK(held_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }
  CHECK(held_thread == others_thread);
  REQUIRE(held.ok());
  REQUIRE(held->has_value());
  CHECK(**held == "1");
  REQUIRE(got.ok());
  CHECK(got->value_or("") == "2");
  CHECK(scanned == std::vector<std::string>{"free"});  // the scan's snapshot: before the commit
  CHECK(committed.ok());
  REQUIRE(counter.ok());
  CHECK(*counter == 5);
  CHECK(store->stats().parked_reads >= 4);
}

TEST_CASE("Reads past the reader queue's bound park until there is room, then all complete") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  PostgresStoreOptions options;
  options.reader_threads = 1;
  options.max_queued_reads = 1;
  auto store = OpenStore(cluster->ConnInfo(), options);
  WriteBatch setup;
  setup.Put(Table::kMeta, "held", "1");
  REQUIRE(store->Commit(setup).ok());
  RawSession locker(cluster->ConnInfo());
  RawSession observer(cluster->ConnInfo());
  REQUIRE(locker.Exec("BEGIN") == "");
  REQUIRE(locker.Exec("LOCK TABLE kiln_meta IN ACCESS EXCLUSIVE MODE") == "");

  constexpr int kReads = 5;
  std::atomic<int> read_ok{0};
  std::atomic<int> reads_done{0};
  absl::Notification other_done;
  {
    fiber::Pool pool(/*threads=*/1, /*fibers=*/kReads + 1, /*max_queued=*/16);
    for (int i = 0; i < kReads; ++i) {
      REQUIRE(pool.TrySubmit([&] {
        fiber::ParkScope park;
        auto value = store->Get(Table::kMeta, "held");
        if (value.ok() && value->value_or("") == "1") ++read_ok;
        ++reads_done;
      }));
    }
    // The lone reader waits in the server, one read is queued, the others wait for room.
    CHECK(WaitsOnTable(observer, "kiln_meta"));
    REQUIRE(pool.TrySubmit([&] { other_done.Notify(); }));
    CHECK(other_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
    CHECK(reads_done == 0);
    REQUIRE(locker.Exec("ROLLBACK") == "");
    CHECK(testutil::WaitFor([&] { return reads_done == kReads; }, absl::Seconds(30)));
  }
  CHECK(read_ok == kReads);
  CHECK(store->stats().parked_reads == kReads);
}

TEST_CASE("A read from a plain thread or from a fiber outside a ParkScope runs on its own thread") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  auto store = OpenStore(cluster->ConnInfo());
  CHECK(store->Get(Table::kMeta, "absent").ok());
  absl::Status read;
  {
    fiber::Pool pool(/*threads=*/1, /*fibers=*/1, /*max_queued=*/4);
    REQUIRE(pool.TrySubmit([&] { read = store->Get(Table::kMeta, "absent").status(); }));
  }
  CHECK(read.ok());
  CHECK(store->stats().parked_reads == 0);
}

TEST_CASE("Migrate creates the schema once and refuses a newer one") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  CHECK(PostgresStore::Migrate(cluster->ConnInfo()).value() == 0);
  CHECK(PostgresStore::Migrate(cluster->ConnInfo()).value() == PostgresStore::kSchemaVersion);
  Sql(cluster->ConnInfo(), "UPDATE kiln_schema SET version = 99");
  absl::StatusOr<int> newer = PostgresStore::Migrate(cluster->ConnInfo());
  CHECK(absl::IsFailedPrecondition(newer.status()));
  CHECK_THAT(std::string(newer.status().message()), Catch::Contains("newer Kiln"));
}

}  // namespace
}  // namespace kiln::orchestrator
