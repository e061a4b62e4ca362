// The production Store: a RocksDB database in one directory with a column family per Table.
// Every Commit is synced before it returns (a batch that says sync = false excepted; the engine
// writes none). Commits from several threads share one write and one fsync (group commit, our
// own): committers queue their batches, and a writer thread of the store's writes every batch
// queued by then as one rocksdb::WriteBatch with sync = true and answers them. A committer waits on
// a fiber::Waiter: a fiber inside a fiber::ParkScope parks (the engine's transitions), anything
// else sleeps on a condition variable. Nothing spins (RocksDB's own write group spins and yields
// while it waits, which on a 2-core host takes the CPU the writer needs: 32 threads got 1,900
// syncs/s instead of 6,000). The writer is a thread of its own rather than the first committer, so
// that a parked fiber never has to run for the others' commits to go on.
//
// When it cannot write, the store stops writing rather than the process: a failed write (a
// full disk, an IO error), an error RocksDB reports from a flush, or less free space than
// RocksDbOptions::min_free_bytes stops writes; every Commit then answers kUnavailable with the
// reason, without touching RocksDB (RocksDB 7.8 asserts, so aborts, on a WAL write after a
// failed one), and reads go on. The writer thread checks every recovery_interval whether it can
// write again: enough free space, then, when RocksDB itself stopped, a close and reopen of the
// database (RocksDB's own recovery is turned off for those errors: after a failed flush it left
// writes refused after space returned). A database that cannot be opened for writing (a start
// on a full disk) is opened read-only and reopened for writing once it can be.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/fiber.h"
#include "orchestrator/persistence/rocksdb_options.h"
#include "orchestrator/persistence/store.h"

namespace prometheus {
class Counter;
}  // namespace prometheus

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Statistics;
class Status;
struct DBOptions;
struct ColumnFamilyOptions;
}  // namespace rocksdb

namespace kiln::orchestrator {

// Counters since Open, for tests and status pages.
struct RocksDbStats {
  uint64_t commits = 0;               // Commit calls that reached rocksdb::DB::Write
  uint64_t wal_syncs = 0;             // WAL fsyncs (ticker WAL_FILE_SYNCED)
  uint64_t writes_done_by_self = 0;   // writes done by a write-group leader for itself
  uint64_t writes_done_by_other = 0;  // writes a leader did on behalf of other threads
  uint64_t groups = 0;                // rocksdb::DB::Write calls made by our group commit
  uint64_t commits_on_caller = 0;     // of those, written on the committing thread
};

class RocksDbStore final : public Store {
 public:
  // Opens (creating if missing) the database at `path`. A directory another RocksDbStore
  // already holds, in this process or another, gives kFailedPrecondition naming the path.
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(const std::string& path,
                                                            const RocksDbOptions& options = {});
  // When the database cannot be opened for writing for lack of space or an IO error but can be
  // read, the store opens it read-only and starts with writes stopped (see the top comment).
  //
  // Closes the database. Every acknowledged commit is already synced, so nothing is lost even
  // if closing reports an error (which is why that error can be dropped here).
  ~RocksDbStore() override;
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  absl::Status Commit(const WriteBatch& batch) override;
  absl::Status CommitOverlapped(const WriteBatch& batch,
                                absl::FunctionRef<void()> meanwhile) override;
  // On the caller's thread when the writer is idle (nothing queued, no group being written);
  // queued for the writer otherwise. The writer and the caller never write at once.
  absl::Status CommitOnCaller(const WriteBatch& batch) override;
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override;
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override;
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override;
  // Live SST bytes plus memtable bytes over every table.
  uint64_t ApproximateSize() override;
  StoreHealth Health() override;

  // Flushes every table's memtable to SST files (tests use it to exercise the on-disk path;
  // durability never needs it, the WAL already holds every commit).
  absl::Status Flush();

  RocksDbStats Stats() const;
  const std::string& path() const { return path_; }

  // Free bytes (for an unprivileged user) on the filesystem holding `path`; nullopt when
  // statvfs fails.
  static std::optional<uint64_t> FreeBytes(const std::string& path);

 private:
  class ErrorListener;
  struct Opened;
  struct Committer;

  RocksDbStore(std::string path, const RocksDbOptions& options);

  // Opens the database at path_ with db_options_, for writing or read-only.
  absl::StatusOr<std::unique_ptr<Opened>> OpenDb(bool read_only);
  // The open database, shared by the calls using it; null while a reopen is under way or
  // after one failed even read-only.
  std::shared_ptr<Opened> Current() const;
  // Installs `next` (may be null) and returns once the database it replaces has closed (when
  // the last call using it let go).
  void Replace(std::unique_ptr<Opened> next);

  // The group commit's writer thread; also where a store that stopped writing recovers.
  void WriterLoop();
  // Writes `group` unless writes are stopped or free space is short, and stops writes when the
  // write fails.
  absl::Status WriteOrRefuse(const std::vector<Committer*>& group);
  // Writes `group` as one synced rocksdb::WriteBatch.
  absl::Status WriteGroup(const std::vector<Committer*>& group);
  // What a Commit gets while writes are stopped.
  absl::Status Refused();
  // What a read gets while no database is open (a reopen failed even read-only).
  absl::Status Closed();
  // Stops writes with `reason`; `reopen`: RocksDB itself stopped, only a reopen resumes.
  void StopWrites(const std::string& reason, bool reopen);
  // Writes stay stopped, for `reason` now.
  void StillStopped(const std::string& reason);
  // Checks free space and, when there is enough, resumes writes (reopening if needed).
  void TryResume();
  // Bytes of the write-ahead log files, which a reopen turns into table files.
  uint64_t WalBytes() const;

  absl::Status Iterate(Table table, std::string_view start, std::string_view end, size_t limit,
                       bool reverse, const ScanVisitor& visit);

  const std::string path_;
  const RocksDbOptions options_;
  std::unique_ptr<rocksdb::DBOptions> db_options_;
  std::unique_ptr<rocksdb::ColumnFamilyOptions> cf_options_;
  std::shared_ptr<rocksdb::Statistics> statistics_;

  mutable absl::Mutex db_mu_;
  // Copied (not locked) by every read and write, so that a scan visitor may call back into the
  // store; only the writer thread's reopen replaces it.
  std::shared_ptr<Opened> db_ ABSL_GUARDED_BY(db_mu_);

  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> groups_{0};
  std::atomic<uint64_t> commits_on_caller_{0};
  // Set with options_.registry.
  prometheus::Counter* groups_counter_ = nullptr;
  prometheus::Counter* on_caller_counter_ = nullptr;
  const bool group_commit_;

  // Writes stopped: read without a lock on every Commit; changed under health_mu_.
  std::atomic<bool> writable_{true};
  absl::Mutex health_mu_;
  StoreHealth health_ ABSL_GUARDED_BY(health_mu_);
  bool needs_reopen_ ABSL_GUARDED_BY(health_mu_) = false;
  // When free space is next checked before a write (microseconds since the epoch).
  std::atomic<int64_t> next_space_check_us_{0};
  absl::Time next_recovery_ = absl::InfinitePast();     // writer thread only
  absl::Time next_waiting_log_ = absl::InfinitePast();  // writer thread only
  absl::Duration recovery_backoff_;                     // writer thread only

  absl::Mutex group_mu_;
  std::vector<Committer*> queued_ ABSL_GUARDED_BY(group_mu_);
  // A group is being written: by the writer thread, or by a caller (CommitOnCaller).
  bool writing_ ABSL_GUARDED_BY(group_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(group_mu_) = false;
  std::thread writer_;
};

}  // namespace kiln::orchestrator
