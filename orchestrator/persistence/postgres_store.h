// A Store on PostgreSQL (libpq), for orchestrators that keep their state in a replicated
// database rather than on their machine's disk (issue 24; RocksdbStore stays the default).
//
// Layout: one table per Store table, `kiln_<name>(k bytea PRIMARY KEY, v bytea NOT NULL)`, and
// `kiln_shards(shard_id, range_id, owner)` for the fence: a batch's fences (WriteBatch::AddFence)
// are checked inside its transaction by `kiln_check_fence`, which locks the shard row FOR SHARE,
// so a takeover (AcquireShard) waits for the commits in flight and fences out every later one.
// bytea compares as unsigned bytes, shorter prefix first, which is RocksDB's default comparator:
// scans see the order the engine's keys are built for. The store creates the schema on Open and
// records its version in `kiln_schema`; a database at a version newer than this binary's is
// refused (kFailedPrecondition) rather than written in a layout this code does not know.
//
// Commit is one SQL transaction sent as one libpq pipeline (BEGIN, an upsert or delete per op in
// op order, COMMIT, then a sync): one round trip for a batch of up to kOpsPerRoundTrip ops. A
// batch with sync = false commits with `synchronous_commit = off`: a server crash may lose it,
// never tear it. Concurrent Commits use different connections of a bounded pool; PostgreSQL's
// WAL writer flushes their commits together (group commit on the server's side).
//
// A lost connection (the server stopped, the network cut) makes the call kUnavailable and the
// store unwritable (Health) and drops the pool's idle connections; the next call connects again.
// A failure once COMMIT was sent may have committed the batch: that too is kUnavailable, the
// Store interface's "outcome unknown". Nothing is retried inside the store.
//
// Reads: Get is one prepared statement; Scan and ReverseScan are one SELECT with the bounds and
// the limit in SQL (one statement sees one snapshot), whose rows are read into memory before
// the visitor runs, so that a visitor may call back into the store. An unbounded scan of a large
// range therefore costs its size in memory: the engine's scans carry limits.
//
// Calls block their thread on the socket: a fiber calling in blocks its thread (see
// docs/reliability.md, "PostgreSQL store", for what is left).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "orchestrator/persistence/store.h"

typedef struct pg_conn PGconn;

namespace kiln::orchestrator {

struct PostgresStoreOptions {
  // Connections open at most at once; a call beyond them waits for one to be returned.
  int max_connections = 8;
  // Called (outside the store's lock) each time writes stop or resume, as Health reports.
  std::function<void(const StoreHealth&)> on_health_change;
};

class PostgresStore final : public Store {
 public:
  // The schema version this code reads and writes.
  static constexpr int kSchemaVersion = 1;
  // A batch's ops go in pipeline chunks of this many, each chunk one round trip: a bound on the
  // results that pile up unread (a pipeline that writes without reading can deadlock on full
  // socket buffers).
  static constexpr size_t kOpsPerRoundTrip = 1000;

  // Connects with libpq's `conninfo` (a "postgres://…" URI or "key=value …"), creates or checks
  // the schema, and returns the store. kUnavailable when the server cannot be reached,
  // kFailedPrecondition for a schema newer than kSchemaVersion.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const std::string& conninfo, const PostgresStoreOptions& options = {});
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  absl::Status Commit(const WriteBatch& batch) override;
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override;
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override;
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override;
  // Takes shard `shard_id` over for `owner`: bumps its range id (creating the shard at range 1)
  // and returns the new one, for the new owner's fences (WriteBatch::AddFence). Waits for the
  // commits in flight under the old range; every commit after it fenced with an older range
  // fails with kFailedPrecondition and applies nothing. An owner whose commit's outcome is
  // unknown takes its own shard over again before reloading, so that the reload is final.
  absl::StatusOr<int64_t> AcquireShard(int32_t shard_id, const std::string& owner);

  // Bytes of the store's tables with their indexes and TOAST (pg_total_relation_size); 0 when
  // the server cannot be reached.
  uint64_t ApproximateSize() override;
  // Unwritable after a lost connection; when unwritable, each call tries to connect again.
  StoreHealth Health() override;

 private:
  class Lease;
  PostgresStore(std::string conninfo, const PostgresStoreOptions& options);

  // A connection from the pool (a new one when none is idle and the pool is not full).
  absl::StatusOr<PGconn*> Acquire();
  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns `conn` to the pool, or closes it when it is broken.
  void Release(PGconn* conn);
  // Opens and prepares a connection.
  absl::StatusOr<PGconn*> Connect();
  // Records a failed call: when `conn` is broken the store becomes unwritable and the idle
  // connections (to the same server, likely broken too) are closed. Returns `status`.
  absl::Status Failed(PGconn* conn, absl::Status status);
  void Succeeded();
  // Makes the store unwritable for `reason` (when it is not already).
  void Unwritable(std::string reason);
  absl::Status ScanRows(Table table, std::string_view start, std::string_view end, size_t limit,
                        bool reverse, const ScanVisitor& visit);

  const std::string conninfo_;
  const PostgresStoreOptions options_;
  absl::Mutex mu_;
  std::vector<PGconn*> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle and leased connections
  StoreHealth health_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
