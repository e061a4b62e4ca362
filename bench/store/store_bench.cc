// The store benchmark: synced commits to the RocksDB store (and, with --stores, to PostgreSQL)
// from N threads at once, batches shaped like the engine's transitions (5 puts, ~850 bytes).
// Shows what group commit gives and what one commit costs at each concurrency. Rows of the
// stores alternate at each thread count, so that both see the same machine load. Prints one
// table and its method.
//
//   kiln-store-bench [--duration 5] [--threads 1,4,16,32] [--stores rocksdb,postgres]
//                    [--pg-writers 2] [--postgres URI]  (without --postgres: a cluster of its own
//                    in a temp dir)
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "orchestrator/persistence/postgres_store.h"
#include "orchestrator/persistence/rocksdb_store.h"
#include "tests/testutil/postgres.h"
#include "tests/testutil/process.h"

namespace kiln::bench {
namespace {

using orchestrator::PostgresStore;
using orchestrator::RocksDbStore;
using orchestrator::Store;
using orchestrator::Table;
using orchestrator::WriteBatch;

struct Row {
  std::string store;  // "Kiln", "RocksDB" (who groups RocksDB's commits) or "PostgreSQL"
  bool group_commit = true;
  int threads = 0;
  double commits_per_second = 0;
  double syncs_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  double per_group = 0;  // commits per write group (RocksDB write, PostgreSQL transaction)
  int writers = 0;       // PostgreSQL: the store's writer threads
};

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(index), values.end());
  return values[index];
}

// One engine-like transition: the run's state, two history events, a task, a visibility row.
WriteBatch Transition(int thread, uint64_t n) {
  WriteBatch batch;
  std::string run = absl::StrFormat("run-%04d-%012d", thread, n / 4);
  batch.Put(Table::kExecutions, run, std::string(420, 's'));
  batch.Put(Table::kHistory, absl::StrCat(run, "/", n % 4, "a"), std::string(150, 'e'));
  batch.Put(Table::kHistory, absl::StrCat(run, "/", n % 4, "b"), std::string(150, 'e'));
  batch.Put(Table::kTasks, absl::StrCat("q/", run, n), std::string(60, 't'));
  batch.Put(Table::kVisibility, run, std::string(80, 'v'));
  return batch;
}

// Commits from `threads` threads for `duration`; `syncs` counts the store's log syncs so far.
absl::StatusOr<Row> Measure(Store& store, int threads, absl::Duration duration,
                            const std::function<uint64_t()>& syncs) {
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<std::vector<double>> latencies(static_cast<size_t>(threads));
  uint64_t syncs_before = syncs();
  absl::Time began = absl::Now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        WriteBatch batch = Transition(t, n);
        absl::Time start = absl::Now();
        if (!store.Commit(batch).ok()) failed = true;
        latencies[static_cast<size_t>(t)].push_back(
            absl::ToDoubleMicroseconds(absl::Now() - start));
      }
    });
  }
  absl::SleepFor(duration);
  stop = true;
  for (std::thread& w : workers) w.join();
  double seconds = absl::ToDoubleSeconds(absl::Now() - began);
  if (failed) return absl::InternalError("a commit failed");
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Row row;
  row.threads = threads;
  row.commits_per_second = static_cast<double>(all.size()) / seconds;
  row.syncs_per_second = static_cast<double>(syncs() - syncs_before) / seconds;
  row.p50_us = Percentile(all, 0.50);
  row.p99_us = Percentile(all, 0.99);
  return row;
}

absl::StatusOr<Row> RunRocksDb(const std::string& dir, bool group_commit, int threads,
                               absl::Duration duration) {
  std::filesystem::remove_all(dir);
  orchestrator::RocksDbOptions options;
  options.group_commit = group_commit;
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> store, RocksDbStore::Open(dir, options));
  ASSIGN_OR_RETURN(Row row,
                   Measure(*store, threads, duration, [&] { return store->Stats().wal_syncs; }));
  orchestrator::RocksDbStats stats = store->Stats();
  if (group_commit && stats.groups > 0) {
    row.per_group = static_cast<double>(stats.commits) / static_cast<double>(stats.groups);
  }
  row.store = group_commit ? "Kiln" : "RocksDB";
  row.group_commit = group_commit;
  return row;
}

// WAL syncs so far from pg_stat_wal (the server publishes it about once a second: the rate is
// approximate over a few seconds). 0 when it cannot be read.
uint64_t PostgresWalSyncs(const std::string& conninfo) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  PGresult* result = PQexec(conn, "SELECT wal_sync FROM pg_stat_wal");
  uint64_t syncs = 0;
  if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1) {
    syncs = std::strtoull(PQgetvalue(result, 0, 0), nullptr, 10);
  }
  PQclear(result);
  PQfinish(conn);
  return syncs;
}

absl::StatusOr<Row> RunPostgres(const std::string& conninfo, int threads, int writers,
                                absl::Duration duration) {
  orchestrator::PostgresStoreOptions options;
  options.writer_threads = writers;
  options.max_connections = writers + 1;
  options.owner = "kiln-store-bench";  // fenced commits, as the orchestrator's
  ASSIGN_OR_RETURN(std::unique_ptr<PostgresStore> store, PostgresStore::Open(conninfo, options));
  ASSIGN_OR_RETURN(Row row,
                   Measure(*store, threads, duration, [&] { return PostgresWalSyncs(conninfo); }));
  PostgresStore::Stats stats = store->stats();
  if (stats.groups > 0) {
    row.per_group = static_cast<double>(stats.commits) / static_cast<double>(stats.groups);
  }
  row.store = "PostgreSQL";
  row.writers = writers;
  return row;
}

int Main(int argc, char** argv) {
  CLI::App app("kiln-store-bench: synced commits to the RocksDB (and PostgreSQL) store");
  double duration = 5;
  std::vector<int> threads = {1, 4, 16, 32};
  std::string dir = std::filesystem::temp_directory_path() / "kiln-store-bench";
  app.add_option("--duration", duration, "Seconds per row");
  app.add_option("--threads", threads, "Committing threads, one row each")->delimiter(',');
  std::vector<std::string> grouping = {"kiln", "rocksdb"};
  app.add_option("--grouping", grouping, "Who groups commits: kiln, rocksdb (a row each)")
      ->delimiter(',')
      ->check(CLI::IsMember({"kiln", "rocksdb"}));
  app.add_option("--dir", dir, "Scratch directory (removed before each row)");
  std::vector<std::string> stores = {"rocksdb"};
  app.add_option("--stores", stores, "Stores to measure, alternating at each thread count")
      ->delimiter(',')
      ->check(CLI::IsMember({"rocksdb", "postgres"}));
  std::vector<int> pg_writers = {2};
  app.add_option("--pg-writers", pg_writers,
                 "PostgreSQL: the store's writer threads (each sends a group per transaction); "
                 "a row each")
      ->delimiter(',');
  std::string postgres;
  app.add_option("--postgres", postgres,
                 "PostgreSQL to measure (libpq URI; its kiln_* tables are written); default: a "
                 "cluster of the bench's own in a temp dir (fsync on)");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<testutil::PostgresCluster> cluster;
  if (std::find(stores.begin(), stores.end(), "postgres") != stores.end() && postgres.empty()) {
    absl::StatusOr<std::unique_ptr<testutil::PostgresCluster>> started =
        testutil::PostgresCluster::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "kiln-store-bench: PostgreSQL: %s\n",
                   started.status().ToString().c_str());
      return 1;
    }
    cluster = std::move(*started);
  }
  std::vector<Row> rows;
  int databases = 0;
  for (int t : threads) {
    for (const std::string& store : stores) {
      std::vector<absl::StatusOr<Row>> measured;
      if (store == "rocksdb") {
        for (const std::string& g : grouping) {
          measured.push_back(RunRocksDb(dir, g == "kiln", t, absl::Seconds(duration)));
        }
      } else {
        // A fresh database per row on our own cluster, as RocksDB gets a fresh directory.
        for (int writers : pg_writers) {
          absl::StatusOr<std::string> conninfo =
              cluster ? cluster->CreateDatabase(absl::StrCat("bench_", ++databases)) : postgres;
          measured.push_back(conninfo.ok()
                                 ? RunPostgres(*conninfo, t, writers, absl::Seconds(duration))
                                 : absl::StatusOr<Row>(conninfo.status()));
        }
      }
      for (absl::StatusOr<Row>& row : measured) {
        if (!row.ok()) {
          std::fprintf(stderr, "kiln-store-bench: %s\n", row.status().ToString().c_str());
          return 1;
        }
        rows.push_back(*row);
      }
    }
  }
  std::filesystem::remove_all(dir);
  std::printf(
      "\nkiln store benchmark\n\nMethod: RocksDbStore on %s, WAL synced on every commit; each "
      "thread commits\nengine-like batches (5 puts, ~860 bytes) back to back for %.0f s. Syncs "
      "from RocksDB's\nWAL_FILE_SYNCED ticker; latency is one Commit call. \"Kiln\" groups "
      "concurrent\ncommits itself (one writer, followers sleep); \"RocksDB\" leaves it to "
      "RocksDB's write group\n(followers spin, then yield, then sleep). \"PostgreSQL\": "
      "PostgresStore (N writers: its writer\nthreads, each sending the commits queued by then "
      "as one fenced transaction), synchronous_commit\non, fsync on; syncs from pg_stat_wal "
      "(approximate). \"per group\": commits per RocksDB write\nor PostgreSQL transaction.\n\n",
      dir.c_str(), duration);
  std::printf(
      "| store | threads | commits/s | WAL syncs/s | commits per sync | per group | p50 | p99 |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Row& r : rows) {
    std::string store =
        r.writers > 0 ? absl::StrCat(r.store, " (", r.writers, " writers)") : r.store;
    std::printf("| %s | %d | %.0f | %.0f | %.1f | %s | %.0f us | %.0f us |\n", store.c_str(),
                r.threads, r.commits_per_second, r.syncs_per_second,
                r.syncs_per_second > 0 ? r.commits_per_second / r.syncs_per_second : 0,
                r.per_group > 0 ? absl::StrFormat("%.1f", r.per_group).c_str() : "-", r.p50_us,
                r.p99_us);
  }
  return 0;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();
  return kiln::bench::Main(argc, argv);
}
