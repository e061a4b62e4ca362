#include "orchestrator/persistence/rocksdb_store.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "orchestrator/persistence/batch_validation.h"
#include "orchestrator/persistence/rocksdb_status.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/statistics.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "rocksdb/write_buffer_manager.h"

namespace kiln::orchestrator {
namespace {

rocksdb::DBOptions MakeDbOptions(const RocksDbOptions& options,
                                 std::shared_ptr<rocksdb::Statistics> statistics) {
  rocksdb::DBOptions db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  // Every commit is synced, so after a crash the WAL ends at most in a torn, unacknowledged
  // record: recover everything before it (RocksDB's default, spelled out because it is what
  // the durability test relies on).
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db.max_background_jobs = options.max_background_jobs;
  db.max_open_files = options.max_open_files;
  db.max_total_wal_size = options.max_total_wal_bytes;
  db.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options.total_write_buffer_bytes);
  db.statistics = std::move(statistics);
  db.max_log_file_size = options.max_info_log_bytes;
  db.keep_log_file_num = options.keep_info_log_files;
  // Write SST files back to disk in 1 MiB steps rather than in one burst at their final fsync,
  // which would otherwise delay the WAL syncs commits are waiting on.
  db.bytes_per_sync = 1 << 20;
  return db;
}

rocksdb::ColumnFamilyOptions MakeTableOptions(const RocksDbOptions& options,
                                              std::shared_ptr<rocksdb::Cache> cache) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = std::move(cache);
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Most reads are point lookups (an execution, a current run): a bloom filter spares them
  // a block read per level.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));

  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.write_buffer_size = options.write_buffer_bytes;
  cf.max_write_buffer_number = options.max_write_buffers;
  cf.level_compaction_dynamic_level_bytes = true;
  cf.target_file_size_base = options.target_file_bytes;
  return cf;
}

// RocksDB reports a held LOCK file as a plain IO error: "While lock file: <path>/LOCK: ..."
// when fcntl finds another process's lock, "lock hold by current process ..." when this
// process holds it (fcntl locks cannot see that). Failing to create LOCK reads differently.
bool IsLockHeld(const rocksdb::Status& status) {
  if (!status.IsIOError()) return false;
  std::string message = status.ToString();
  return absl::StrContains(message, "While lock file") ||
         absl::StrContains(message, "lock hold by current process");
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(const std::string& path,
                                                                 const RocksDbOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("store path is empty");
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create store directory ", path, ": ", error.message()));
  }

  auto statistics = rocksdb::CreateDBStatistics();
  // Tickers are all we read; histograms and timers cost CPU on every write.
  statistics->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  rocksdb::DBOptions db_options = MakeDbOptions(options, statistics);
  rocksdb::ColumnFamilyOptions cf_options =
      MakeTableOptions(options, rocksdb::NewLRUCache(options.block_cache_bytes));

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  for (int t = 0; t < kTableCount; ++t) names.emplace_back(TableName(static_cast<Table>(t)));
  if (std::filesystem::exists(std::filesystem::path(path) / "CURRENT", error)) {
    // RocksDB refuses to open a database without every family it holds; one we do not know
    // (from a newer Kiln) is opened and left alone.
    std::vector<std::string> existing;
    rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &existing);
    if (!listed.ok()) {
      return FromRocksDb(listed, absl::StrCat("listing the tables of the store at ", path));
    }
    for (const std::string& name : existing) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(names.size());
  for (const std::string& name : names) descriptors.emplace_back(name, cf_options);

  rocksdb::DB* raw_db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status opened = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw_db);
  if (!opened.ok()) {
    if (IsLockHeld(opened)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the store at ", path,
                       " is already open (by this or another process): ", opened.ToString()));
    }
    return FromRocksDb(opened, absl::StrCat("opening the store at ", path));
  }
  return std::unique_ptr<RocksDbStore>(new RocksDbStore(path, std::unique_ptr<rocksdb::DB>(raw_db),
                                                        std::move(handles), std::move(statistics),
                                                        options.group_commit));
}

RocksDbStore::RocksDbStore(std::string path, std::unique_ptr<rocksdb::DB> db,
                           std::vector<rocksdb::ColumnFamilyHandle*> handles,
                           std::shared_ptr<rocksdb::Statistics> statistics, bool group_commit)
    : path_(std::move(path)),
      db_(std::move(db)),
      handles_(std::move(handles)),
      statistics_(std::move(statistics)),
      group_commit_(group_commit) {
  // Open returns handles in descriptor order: default first, then the tables in enum order.
  for (int t = 0; t < kTableCount; ++t) tables_[t] = handles_[t + 1];
  if (group_commit_) writer_ = std::thread([this] { WriterLoop(); });
}

RocksDbStore::~RocksDbStore() {
  if (writer_.joinable()) {
    {
      absl::MutexLock lock(&group_mu_);
      stopping_ = true;
    }
    writer_.join();
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    // Only fails for the default family's handle in old RocksDB versions; nothing to undo.
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  // Ignored on purpose: see the destructor's comment in the header.
  db_->Close().PermitUncheckedError();
}

// One queued commit; lives on its caller's stack until the writer notifies it.
struct RocksDbStore::Committer {
  const WriteBatch* batch = nullptr;
  absl::Status status;
  fiber::Waiter written;
};

namespace {
// A group stops growing past these (a lone batch larger than the bytes bound is still written).
constexpr size_t kMaxGroupCommits = 256;
constexpr size_t kMaxGroupBytes = 4 << 20;
}  // namespace

absl::Status RocksDbStore::Commit(const WriteBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(ValidateBatch(batch));
  commits_.fetch_add(1, std::memory_order_relaxed);
  Committer self;
  self.batch = &batch;
  if (!group_commit_) return WriteGroup({&self});
  absl::MutexLock lock(&group_mu_);
  queued_.push_back(&self);
  self.written.Wait(&group_mu_);
  return self.status;
}

void RocksDbStore::WriterLoop() {
  std::vector<Committer*> group;
  for (;;) {
    {
      absl::MutexLock lock(&group_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(group_mu_) {
        return stopping_ || !queued_.empty();
      };
      group_mu_.Await(absl::Condition(&ready));
      if (queued_.empty()) return;  // Stopping, and every commit answered.
      size_t bytes = 0;
      size_t take = 0;
      while (take < queued_.size() && take < kMaxGroupCommits &&
             (take == 0 || bytes + queued_[take]->batch->bytes() <= kMaxGroupBytes)) {
        bytes += queued_[take]->batch->bytes();
        ++take;
      }
      group.assign(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(take));
      queued_.erase(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(take));
    }
    absl::Status status = WriteGroup(group);
    groups_.fetch_add(1, std::memory_order_relaxed);
    absl::MutexLock lock(&group_mu_);
    // A committer may return (and free its Committer) as soon as the lock is released: nothing
    // below touches a group member after this loop.
    for (Committer* c : group) {
      c->status = status;
      c->written.Notify();
    }
  }
}

absl::Status RocksDbStore::WriteGroup(const std::vector<Committer*>& group) {
  size_t bytes = 0;
  size_t ops = 0;
  for (const Committer* c : group) {
    bytes += c->batch->bytes();
    ops += c->batch->size();
  }
  // Roughly the batch's encoded size, so building it does not reallocate for large values.
  rocksdb::WriteBatch write(bytes + 16 * ops + 12);
  for (const Committer* c : group) {
    for (const WriteBatch::Op& op : c->batch->ops()) {
      rocksdb::ColumnFamilyHandle* table = tables_[static_cast<size_t>(op.table)];
      rocksdb::Status added = op.type == WriteBatch::OpType::kPut
                                  ? write.Put(table, op.key, op.value)
                                  : write.Delete(table, op.key);
      if (!added.ok()) return FromRocksDb(added, "building the write batch");
    }
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  return FromRocksDbWrite(db_->Write(write_options, &write));
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Get(Table table, std::string_view key) {
  if (!IsKnownTable(table)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown table ", static_cast<int>(table)));
  }
  rocksdb::PinnableSlice value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), tables_[static_cast<size_t>(table)],
                                    rocksdb::Slice(key.data(), key.size()), &value);
  if (status.IsNotFound()) return std::optional<std::string>();
  if (!status.ok()) return FromRocksDb(status, absl::StrCat("reading ", TableName(table)));
  return std::optional<std::string>(value.ToString());
}

absl::Status RocksDbStore::Scan(Table table, std::string_view start, std::string_view end,
                                size_t limit, const ScanVisitor& visit) {
  return Iterate(table, start, end, limit, /*reverse=*/false, visit);
}

absl::Status RocksDbStore::ReverseScan(Table table, std::string_view start, std::string_view end,
                                       size_t limit, const ScanVisitor& visit) {
  return Iterate(table, start, end, limit, /*reverse=*/true, visit);
}

absl::Status RocksDbStore::Iterate(Table table, std::string_view start, std::string_view end,
                                   size_t limit, bool reverse, const ScanVisitor& visit) {
  if (!IsKnownTable(table)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown table ", static_cast<int>(table)));
  }
  if (!end.empty() && end <= start) return absl::OkStatus();
  // The bounds keep the iterator from reading (and caching) blocks outside the range, and make
  // SeekToLast land on the largest key < end.
  rocksdb::Slice lower(start.data(), start.size());
  rocksdb::Slice upper(end.data(), end.size());
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower;
  if (!end.empty()) read_options.iterate_upper_bound = &upper;
  // An iterator reads from an implicit snapshot taken when it is created, so every entry it
  // yields belongs to one consistent view while writers carry on: that is Scan's snapshot.
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(read_options, tables_[static_cast<size_t>(table)]));
  if (reverse) {
    it->SeekToLast();
  } else {
    it->Seek(lower);
  }
  for (size_t visited = 0; it->Valid() && (limit == 0 || visited < limit); ++visited) {
    rocksdb::Slice key = it->key();
    rocksdb::Slice value = it->value();
    if (!visit(std::string_view(key.data(), key.size()),
               std::string_view(value.data(), value.size()))) {
      break;
    }
    if (reverse) {
      it->Prev();
    } else {
      it->Next();
    }
  }
  return FromRocksDb(it->status(), absl::StrCat("scanning ", TableName(table)));
}

uint64_t RocksDbStore::ApproximateSize() {
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* table : tables_) {
    uint64_t value = 0;
    if (db_->GetIntProperty(table, rocksdb::DB::Properties::kLiveSstFilesSize, &value)) {
      total += value;
    }
    if (db_->GetIntProperty(table, rocksdb::DB::Properties::kCurSizeAllMemTables, &value)) {
      total += value;
    }
  }
  return total;
}

absl::Status RocksDbStore::Flush() {
  std::vector<rocksdb::ColumnFamilyHandle*> tables(tables_.begin(), tables_.end());
  return FromRocksDb(db_->Flush(rocksdb::FlushOptions(), tables), "flushing the store");
}

RocksDbStats RocksDbStore::Stats() const {
  RocksDbStats stats;
  stats.commits = commits_.load(std::memory_order_relaxed);
  stats.wal_syncs = statistics_->getTickerCount(rocksdb::WAL_FILE_SYNCED);
  stats.writes_done_by_self = statistics_->getTickerCount(rocksdb::WRITE_DONE_BY_SELF);
  stats.writes_done_by_other = statistics_->getTickerCount(rocksdb::WRITE_DONE_BY_OTHER);
  stats.groups = groups_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace kiln::orchestrator
