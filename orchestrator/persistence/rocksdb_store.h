// The production Store: a RocksDB database in one directory with a column family per Table.
// Every Commit is synced before it returns. Commits from several threads share one write and
// one fsync (group commit, our own): committers queue their batches, and a writer thread of the
// store's writes every batch queued by then as one rocksdb::WriteBatch with sync = true and
// answers them. A committer waits on a fiber::Waiter: a fiber inside a fiber::ParkScope parks
// (the engine's transitions), anything else sleeps on a condition variable. Nothing spins
// (RocksDB's own write group spins and yields while it waits, which on a 2-core host takes the
// CPU the writer needs: 32 threads got 1,900 syncs/s instead of 6,000). The writer is a thread
// of its own rather than the first committer, so that a parked fiber never has to run for the
// others' commits to go on.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
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

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Statistics;
}  // namespace rocksdb

namespace kiln::orchestrator {

// Counters since Open, for tests and status pages.
struct RocksDbStats {
  uint64_t commits = 0;               // Commit calls that reached rocksdb::DB::Write
  uint64_t wal_syncs = 0;             // WAL fsyncs (ticker WAL_FILE_SYNCED)
  uint64_t writes_done_by_self = 0;   // writes done by a write-group leader for itself
  uint64_t writes_done_by_other = 0;  // writes a leader did on behalf of other threads
  uint64_t groups = 0;                // rocksdb::DB::Write calls made by our group commit
};

class RocksDbStore final : public Store {
 public:
  // Opens (creating if missing) the database at `path`. A directory another RocksDbStore
  // already holds, in this process or another, gives kFailedPrecondition naming the path.
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(const std::string& path,
                                                            const RocksDbOptions& options = {});
  // Closes the database. Every acknowledged commit is already synced, so nothing is lost even
  // if closing reports an error (which is why that error can be dropped here).
  ~RocksDbStore() override;
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  absl::Status Commit(const WriteBatch& batch) override;
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override;
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override;
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override;
  // Live SST bytes plus memtable bytes over every table.
  uint64_t ApproximateSize() override;

  // Flushes every table's memtable to SST files (tests use it to exercise the on-disk path;
  // durability never needs it, the WAL already holds every commit).
  absl::Status Flush();

  RocksDbStats Stats() const;
  const std::string& path() const { return path_; }

 private:
  RocksDbStore(std::string path, std::unique_ptr<rocksdb::DB> db,
               std::vector<rocksdb::ColumnFamilyHandle*> handles,
               std::shared_ptr<rocksdb::Statistics> statistics, bool group_commit);

  struct Committer;
  // The group commit's writer thread.
  void WriterLoop();
  // Writes `group` as one synced rocksdb::WriteBatch.
  absl::Status WriteGroup(const std::vector<Committer*>& group);

  absl::Status Iterate(Table table, std::string_view start, std::string_view end, size_t limit,
                       bool reverse, const ScanVisitor& visit);

  const std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  // Every handle Open returned (our tables, "default", and any unknown family found on disk,
  // which RocksDB insists on opening); destroyed before the DB closes.
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  // handles_ entries by Table.
  std::array<rocksdb::ColumnFamilyHandle*, kTableCount> tables_{};
  std::shared_ptr<rocksdb::Statistics> statistics_;
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> groups_{0};
  const bool group_commit_;

  absl::Mutex group_mu_;
  std::vector<Committer*> queued_ ABSL_GUARDED_BY(group_mu_);
  bool stopping_ ABSL_GUARDED_BY(group_mu_) = false;
  std::thread writer_;  // with group_commit_
};

}  // namespace kiln::orchestrator
