// The engine's storage interface: named tables of ordered byte keys, written only through
// atomic batches that are durable (synced) before Commit returns, unless a batch says it may be
// lost (WriteBatch::set_sync(false), which nothing in the engine does today). The engine composes
// its keys (keys.h) and values (kiln.internal.v1 protos) on top; every implementation (RocksDB,
// memory) passes the one conformance suite in store_conformance.h.
//
// Concurrent Commit calls from different threads must share syncs (group commit): an
// implementation never serialises all commits behind one lock held across an fsync.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::orchestrator {

// One table per kind of record; RocksDB keeps each in its own column family.
enum class Table : uint8_t {
  kMeta = 0,        // engine bookkeeping (id blocks, schema version)
  kExecutions = 1,  // run id -> ExecutionState (the run's mutable state)
  kHistory = 2,     // run id + event id -> HistoryEvent
  kCurrent = 3,     // namespace + workflow id -> CurrentRun
  kTasks = 4,       // task queue backlog: queue + task id -> TaskRecord
  kTimers = 5,      // fire time + task id -> TimerTask: timers AND transfer tasks (due now)
  kVisibility = 6,  // namespace + inverted start time + run id -> VisibilityRecord
  kLogs = 7,        // log streams
  kRetention = 8,   // fire time + task id -> TimerTask: closed runs' history deletions
};
inline constexpr int kTableCount = 9;
const char* TableName(Table table);

// A writer's claim on a shard: the batch may commit only while the shard's range id is still
// `range_id` (a takeover bumps it: PostgresStore::AcquireShard). The fence of issue 24, for
// several orchestrators on one database; RocksDB and the memory store have one owner holding
// every shard and ignore fences.
struct ShardFence {
  int32_t shard_id = 0;
  int64_t range_id = 0;
};

// A set of writes applied atomically by Store::Commit.
class WriteBatch {
 public:
  enum class OpType : uint8_t { kPut, kDelete };
  struct Op {
    OpType type;
    Table table;
    std::string key;
    std::string value;
  };

  void Put(Table table, std::string key, std::string value) {
    bytes_ += key.size() + value.size();
    if (ops_.capacity() == 0) ops_.reserve(kFirstOps);
    ops_.push_back({OpType::kPut, table, std::move(key), std::move(value)});
  }
  void Delete(Table table, std::string key) {
    bytes_ += key.size();
    if (ops_.capacity() == 0) ops_.reserve(kFirstOps);
    ops_.push_back({OpType::kDelete, table, std::move(key), {}});
  }
  // Appends every op of `other`, after this batch's own.
  void Append(WriteBatch&& other);
  // Takes back this batch's last Put of `key` (a record written and made moot before the
  // commit, which then writes neither it nor a tombstone). False when there is none.
  bool Unput(Table table, std::string_view key);

  // Whether Commit makes this batch durable before it returns (the default). A batch with
  // sync = false is written to the log unsynced, as RocksDB's WriteOptions::sync = false: a
  // process crash keeps it, a power cut may lose it, together with every unsynced batch after
  // it, until a later synced commit (which syncs the log as a whole) makes it durable. It is
  // never torn. Only a write whose loss the engine can afford may use it: docs/reliability.md
  // ("Lost unsynced writes") says which; FaultInjectingStore::CutPower tests it.
  void set_sync(bool sync) { sync_ = sync; }
  bool sync() const { return sync_; }

  // Commit applies nothing, and answers kFailedPrecondition, unless every fence holds at commit
  // (a store that checks fences; see ShardFence). Append keeps both batches' fences.
  void AddFence(ShardFence fence) { fences_.push_back(fence); }
  const std::vector<ShardFence>& fences() const { return fences_; }

  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  // Total key and value bytes: a bound on what the batch will write.
  size_t bytes() const { return bytes_; }
  void Clear() {
    ops_.clear();
    fences_.clear();
    bytes_ = 0;
    sync_ = true;
  }

 private:
  // A transition writes about ten records (events, state, tasks, timers, visibility): room for
  // them at the first op, rather than growing (and moving every key and value) four times.
  // 14 ops (1,008 bytes) come from glibc's per-thread cache; 16 (1,152 bytes) took the
  // large-chunk path, whose malloc_consolidate was 1.3% of the orchestrator's CPU.
  static constexpr size_t kFirstOps = 14;
  static_assert(kFirstOps * sizeof(Op) <= 1032, "the first reserve stays in glibc's tcache");

  std::vector<Op> ops_;
  std::vector<ShardFence> fences_;
  size_t bytes_ = 0;
  bool sync_ = true;
};

// Whether a store takes writes now, and if not, why. A store that cannot write (a full disk, a
// failed write) keeps serving reads and answers every Commit with kUnavailable until it can
// write again, which it finds out by itself.
struct StoreHealth {
  bool writable = true;
  std::string reason;                       // why writes are refused; empty while writable
  absl::Time since = absl::InfinitePast();  // when writes stopped
};

// Receives scanned entries in order; returns false to stop the scan.
using ScanVisitor = std::function<bool(std::string_view key, std::string_view value)>;

class Store {
 public:
  virtual ~Store() = default;

  // Applies every op of `batch` or none, in op order (a later op on the same key wins), and
  // makes it durable before returning OK (unless batch.sync() is false: see WriteBatch). An error
  // means nothing was applied, except for IO errors after the write reached the log, which an
  // implementation reports as kUnavailable ("outcome unknown"): callers must then reload state from
  // the store.
  virtual absl::Status Commit(const WriteBatch& batch) = 0;

  // Commit, running `meanwhile` once the batch is accepted and queued for its write, before
  // waiting for the sync: work that may overlap the sync goes there (HistoryEngine hands out a
  // workflow task early). Not run when the batch is refused before it is queued (an invalid
  // batch, a store refusing writes). A store with no write queue runs it first.
  virtual absl::Status CommitOverlapped(const WriteBatch& batch,
                                        absl::FunctionRef<void()> meanwhile) {
    meanwhile();
    return Commit(batch);
  }

  // Commit, for a caller whose thread has nothing else to do until the sync: a store that
  // writes from a thread of its own may write and sync on the caller's thread instead, when
  // that thread would be idle anyway (saving its wake-up, and the caller's after the sync).
  // Blocks the calling thread for the write either way.
  virtual absl::Status CommitOnCaller(const WriteBatch& batch) { return Commit(batch); }

  // The value at `key`, or nullopt when absent.
  virtual absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) = 0;

  // Visits keys in [start, end) in ascending byte order (an empty `end` means no upper bound),
  // at most `limit` of them (0 means no limit). Sees a consistent snapshot.
  virtual absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                            const ScanVisitor& visit) = 0;

  // Like Scan, in descending order, over [start, end), starting from the largest key < end.
  virtual absl::Status ReverseScan(Table table, std::string_view start, std::string_view end,
                                   size_t limit, const ScanVisitor& visit) = 0;

  // Approximate number of bytes stored (for status pages and housekeeping).
  virtual uint64_t ApproximateSize() = 0;

  // Whether Commit can succeed now (see StoreHealth). A store that never stops writing need not
  // override it.
  virtual StoreHealth Health() { return {}; }

  // Adds `delta` (> 0) to the counter at `key` (8 bytes, big-endian; absent counts as 0),
  // durably, and returns the new value: the engine's task-id blocks. Atomic against every
  // writer of the store: a store that several processes share (PostgreSQL) does it in one
  // statement; this default reads and commits under a process-wide lock, enough for a store only
  // this process writes. A wrapper forwards it, so that the store below decides.
  virtual absl::StatusOr<int64_t> FetchAdd(Table table, std::string_view key, int64_t delta);
};

}  // namespace kiln::orchestrator
