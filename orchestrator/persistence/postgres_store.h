// A Store on PostgreSQL (libpq), for orchestrators that keep their state in a replicated
// database rather than on their machine's disk (issue 24; RocksdbStore stays the default).
//
// Layout: one table per Store table, `kiln_<name>(k bytea PRIMARY KEY, v bytea NOT NULL)`, and
// `kiln_shards(shard_id, range_id, owner)` for the fence: a batch's fences (WriteBatch::AddFence)
// are checked inside its transaction by `kiln_check_fence`, which locks the shard row FOR SHARE,
// so a takeover (AcquireShard) waits for the commits in flight and fences out every later one.
// bytea compares as unsigned bytes, shorter prefix first, which is RocksDB's default comparator:
// scans see the order the engine's keys are built for. The store creates the schema on Open (or
// `Migrate` does, for `kiln-orchestrator migrate`) and records its version in `kiln_schema`; a
// database at a version newer than this binary's is refused (kFailedPrecondition) rather than
// written in a layout this code does not know.
//
// Commits are grouped, as RocksdbStore groups them: Commit queues its batch and waits on a
// fiber::Waiter (a fiber inside a fiber::ParkScope parks; any other caller blocks), and each of
// `writer_threads` writer threads sends what is queued as ONE SQL transaction in one libpq
// pipeline (BEGIN, the fences, an upsert or delete per op in op order, COMMIT, a sync): one round
// trip and one WAL flush for up to kMaxGroupCommits transitions. A group fails as a whole only
// for what concerns all its members (the connection, the server, the store's own fence); when a
// statement fails for one member (its own fence, a value the server refuses), the group is
// retried one transaction per member, so each member gets its own answer and the others commit.
// A group with only unsynced batches commits with `synchronous_commit = off` (a server crash may
// lose it, never tear it).
//
// The store's own claim (PostgresStoreOptions::owner): Open takes shard kStoreShard (the range
// id bumps; a previous owner's commits in flight finish first, its later ones fail) and fences
// every group with it. An orchestrator whose database another one took over stops writing
// (Health says why; Commit answers kUnavailable) rather than write beside it. A commit whose
// outcome is unknown (the connection lost once COMMIT was sent) makes the store renew its claim
// (range r to r+1, only if still at r) before any later read or commit: the lost transaction has
// then either committed or never will, so what the engine reloads is final (Temporal does the
// same on its shards).
//
// A lost connection (the server stopped, the network cut) makes the call kUnavailable and the
// store unwritable (Health) and drops the pool's idle connections; the next call connects again.
// Nothing is retried inside the store but the per-member retry of a group above.
//
// Reads: Get is one prepared statement; Scan and ReverseScan are one SELECT with the bounds and
// the limit in SQL (one statement sees one snapshot), whose rows are read into memory before
// the visitor runs, so that a visitor may call back into the store. An unbounded scan of a large
// range therefore costs its size in memory: the engine's scans carry limits. A caller that may
// park (fiber::CanPark(): an engine fiber inside a fiber::ParkScope) does not wait on the socket
// itself: its read (Get, Scan, ReverseScan, FetchAdd, and the round trips of Health and
// ApproximateSize) is queued for the store's reader threads and the fiber parks on a
// fiber::Waiter, so its thread runs other fibers while the server answers, however long that
// takes (a lock, a slow disk, a paused server). Any other caller reads on its own thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "orchestrator/persistence/store.h"

typedef struct pg_conn PGconn;

namespace kiln::fiber {
class Waiter;
}  // namespace kiln::fiber

namespace kiln::orchestrator {

struct PostgresStoreOptions {
  // Connections open at most at once; a call beyond them waits for one to be returned.
  int max_connections = 8;
  // Threads sending queued commits, a group per transaction (each holds a connection while it
  // sends). Two keep one group in flight while the next forms; more add round trips in parallel.
  int writer_threads = 2;
  // Threads answering the reads of callers that may park (fiber::CanPark()), each holding a
  // connection while it reads. A read the server holds up (a lock, a slow disk) holds one of them;
  // the others serve the next reads. 0: every caller reads on its own thread.
  int reader_threads = 4;
  // Reads queued for those threads at most; a caller finding the queue full parks until there is
  // room. Each parked caller queues one read, so the engine's fibers alone stay below the default.
  size_t max_queued_reads = 1024;
  // Non-empty: the store takes shard kStoreShard for this owner on Open and fences every commit
  // with it (see above). Empty: no claim (tests, tools; batches may carry their own fences).
  std::string owner;
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
  // A group stops growing past these (a lone batch larger than the bytes bound is still sent).
  static constexpr size_t kMaxGroupCommits = 64;
  static constexpr size_t kMaxGroupBytes = 4 << 20;
  // The shard an owner of the whole store claims (one orchestrator per database). The cluster
  // step's history shards are 1 and up.
  static constexpr int32_t kStoreShard = 0;

  // Connects with libpq's `conninfo` (a "postgres://…" URI or "key=value …"), creates or checks
  // the schema, and returns the store. kUnavailable when the server cannot be reached,
  // kFailedPrecondition for a schema newer than kSchemaVersion.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const std::string& conninfo, const PostgresStoreOptions& options = {});
  // Creates the schema, or checks it is this version's; returns the version found before (0: none,
  // a new database). kFailedPrecondition for a newer schema. `kiln-orchestrator migrate`.
  static absl::StatusOr<int> Migrate(const std::string& conninfo);
  // Answers every queued commit, then closes the connections.
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  absl::Status Commit(const WriteBatch& batch) override;
  absl::Status CommitOverlapped(const WriteBatch& batch,
                                absl::FunctionRef<void()> meanwhile) override;
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
  // Bumps shard `shard_id` from `range_id` to the next range only if it is still at `range_id`
  // (an owner renewing its own claim); kFailedPrecondition when another owner took it.
  absl::StatusOr<int64_t> RenewShard(int32_t shard_id, int64_t range_id);
  // One statement (INSERT … ON CONFLICT DO UPDATE … RETURNING), fenced by the store's claim.
  absl::StatusOr<int64_t> FetchAdd(Table table, std::string_view key, int64_t delta) override;
  // The range id of the store's claim (0 without an owner).
  int64_t range_id();

  // Bytes of the store's tables with their indexes and TOAST (pg_total_relation_size); 0 when
  // the server cannot be reached.
  uint64_t ApproximateSize() override;
  // Unwritable after a lost connection; when unwritable, each call tries to connect again.
  StoreHealth Health() override;

  // Counters since Open, for tests and the benchmark.
  struct Stats {
    uint64_t commits = 0;        // batches queued by Commit
    uint64_t groups = 0;         // transactions sent for groups
    uint64_t group_retries = 0;  // groups retried one member per transaction
    uint64_t renewals = 0;       // claims renewed after an unknown outcome
    uint64_t parked_reads = 0;   // reads run by a reader thread while their caller parked
  };
  Stats stats();

 private:
  class Lease;
  struct Committer;
  struct GroupResult;
  struct QueuedRead;
  PostgresStore(std::string conninfo, const PostgresStoreOptions& options);

  // Runs `read` (a call's round trips) on a reader thread while the caller parks, when it may
  // park; on the caller's thread otherwise. Returns once `read` has run.
  void Read(absl::FunctionRef<void()> read);
  template <typename F>
  auto OnReader(F&& read) -> decltype(read()) {
    decltype(read()) result;
    Read([&] { result = read(); });
    return result;
  }
  void ReaderLoop();

  void WriterLoop();
  // Sends `group` and answers each member (the per-member retry included).
  void WriteGroup(const std::vector<Committer*>& group);
  // One transaction for `batches`, fenced by the claim `claim_range` (0: none).
  GroupResult Transaction(const std::vector<const WriteBatch*>& batches, int64_t claim_range);
  // Before a read or a commit: renews the claim when an unknown outcome asked for it.
  // `for_read`: a claim lost to another owner does not fail a read.
  absl::Status SettleClaim(bool for_read);
  // The claim is lost to another owner: writes stop for good (this process).
  void FencedOut(const std::string& reason);

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
  std::string fenced_out_ ABSL_GUARDED_BY(mu_);  // why the claim is lost; empty while held
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // The claim: its range, and whether an unknown outcome asks for a renewal before the next
  // read or commit. claim_mu_ serialises renewals (held across one round trip).
  absl::Mutex claim_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  int64_t claim_range_ ABSL_GUARDED_BY(mu_) = 0;
  bool renew_claim_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex queue_mu_;
  std::vector<Committer*> queued_ ABSL_GUARDED_BY(queue_mu_);
  uint64_t commits_ ABSL_GUARDED_BY(queue_mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::vector<std::thread> writers_;

  // The reads queued for the reader threads, and the callers waiting for room in that queue.
  absl::Mutex reads_mu_;
  std::deque<QueuedRead*> reads_ ABSL_GUARDED_BY(reads_mu_);
  std::deque<fiber::Waiter*> waiting_for_room_ ABSL_GUARDED_BY(reads_mu_);
  bool reads_stopping_ ABSL_GUARDED_BY(reads_mu_) = false;
  uint64_t parked_reads_ ABSL_GUARDED_BY(reads_mu_) = 0;
  std::vector<std::thread> readers_;
};

}  // namespace kiln::orchestrator
