#include "orchestrator/persistence/rocksdb_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/hop_trace.h"
#include "common/logging.h"
#include "common/status.h"
#include "orchestrator/persistence/batch_validation.h"
#include "orchestrator/persistence/rocksdb_info_log.h"
#include "orchestrator/persistence/rocksdb_status.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
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

// Turns RocksDB's own recovery off for the errors that stop its writes (we reopen instead: see
// rocksdb_store.h) and tells the store at once, so that health shows a failed flush before any
// commit meets it. Soft errors (a compaction out of space) keep RocksDB's recovery: writes go on
// meanwhile.
class RocksDbStore::ErrorListener final : public rocksdb::EventListener {
 public:
  explicit ErrorListener(RocksDbStore* store) : store_(store) {}

  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override {
    if (error->ok() || error->severity() < rocksdb::Status::Severity::kHardError) return;
    store_->StopWrites(absl::StrCat("RocksDB stopped writes after a background error (",
                                    ReasonName(reason), "): ", error->ToString()),
                       /*reopen=*/true);
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status error,
                            bool* auto_recovery) override {
    if (error.severity() >= rocksdb::Status::Severity::kHardError) *auto_recovery = false;
  }

 private:
  static const char* ReasonName(rocksdb::BackgroundErrorReason reason) {
    switch (reason) {
      case rocksdb::BackgroundErrorReason::kFlush:
      case rocksdb::BackgroundErrorReason::kFlushNoWAL:
        return "flush";
      case rocksdb::BackgroundErrorReason::kCompaction:
        return "compaction";
      case rocksdb::BackgroundErrorReason::kWriteCallback:
        return "write";
      case rocksdb::BackgroundErrorReason::kMemTable:
        return "memtable";
      case rocksdb::BackgroundErrorReason::kManifestWrite:
      case rocksdb::BackgroundErrorReason::kManifestWriteNoWAL:
        return "manifest write";
    }
    return "unknown";
  }

  RocksDbStore* const store_;
};

// One open database: the DB and its column family handles. Closed when the last call using
// it lets go.
struct RocksDbStore::Opened {
  std::unique_ptr<rocksdb::DB> db;
  // Every handle Open returned (our tables, "default", and any unknown family found on disk,
  // which RocksDB insists on opening); destroyed before the DB closes.
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  // handles entries by Table.
  std::array<rocksdb::ColumnFamilyHandle*, kTableCount> tables{};
  bool read_only = false;
  // Set before the last reference goes: close without flushing the memtables. A flush switches
  // the WAL, writing to the one that failed, where RocksDB 7.8 asserts; and every commit is in
  // the WAL already.
  std::atomic<bool> avoid_flush{false};
  absl::Notification* closed = nullptr;  // notified once closed

  ~Opened() {
    if (avoid_flush && !read_only) {
      db->SetDBOptions({{"avoid_flush_during_shutdown", "true"}}).PermitUncheckedError();
    }
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      // Only fails for the default family's handle in old RocksDB versions; nothing to undo.
      db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    }
    // Ignored on purpose: see the destructor's comment in the header.
    db->Close().PermitUncheckedError();
    db.reset();
    if (closed != nullptr) closed->Notify();
  }
};

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(const std::string& path,
                                                                 const RocksDbOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("store path is empty");
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create store directory ", path, ": ", error.message()));
  }
  std::unique_ptr<RocksDbStore> store(new RocksDbStore(path, options));
  absl::StatusOr<std::unique_ptr<Opened>> opened = store->OpenDb(/*read_only=*/false);
  if (!opened.ok() && absl::IsUnavailable(opened.status()) &&
      std::filesystem::exists(std::filesystem::path(path) / "CURRENT", error)) {
    // A full disk (or a failing one) need not take the reads down with the writes.
    absl::StatusOr<std::unique_ptr<Opened>> read_only = store->OpenDb(/*read_only=*/true);
    if (read_only.ok()) {
      LogError("store.opened_read_only", {{"path", path}, {"status", opened.status()}});
      store->StopWrites(absl::StrCat("the store could not be opened for writing (",
                                     opened.status().message(), "); it serves reads meanwhile"),
                        /*reopen=*/true);
      opened = std::move(read_only);
    }
  }
  if (!opened.ok()) return opened.status();
  store->Replace(std::move(*opened));
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

RocksDbStore::RocksDbStore(std::string path, const RocksDbOptions& options)
    : path_(std::move(path)),
      options_(options),
      group_commit_(options.group_commit),
      recovery_backoff_(options.recovery_interval) {
  statistics_ = rocksdb::CreateDBStatistics();
  // Tickers are all we read; histograms and timers cost CPU on every write.
  statistics_->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  db_options_ = std::make_unique<rocksdb::DBOptions>(MakeDbOptions(options, statistics_));
  if (options.env != nullptr) db_options_->env = options.env;
  db_options_->info_log = std::make_shared<RocksDbInfoLog>(path_, options.max_info_log_bytes,
                                                           options.keep_info_log_files);
  db_options_->listeners.push_back(std::make_shared<ErrorListener>(this));
  cf_options_ = std::make_unique<rocksdb::ColumnFamilyOptions>(
      MakeTableOptions(options, rocksdb::NewLRUCache(options.block_cache_bytes)));
  if (options.registry != nullptr) {
    groups_counter_ = &prometheus::BuildCounter()
                           .Name("kiln_store_commit_groups_total")
                           .Help(
                               "Synced writes of the store's group commit: the commits of "
                               "each share its fsync")
                           .Register(*options.registry)
                           .Add({});
    on_caller_counter_ = &prometheus::BuildCounter()
                              .Name("kiln_store_commits_on_caller_total")
                              .Help(
                                  "Synced writes a committing thread made itself, the store's "
                                  "writer idle and commits few (docs/fast-paths.md)")
                              .Register(*options.registry)
                              .Add({});
  }
}

absl::StatusOr<std::unique_ptr<RocksDbStore::Opened>> RocksDbStore::OpenDb(bool read_only) {
  std::error_code error;
  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  for (int t = 0; t < kTableCount; ++t) names.emplace_back(TableName(static_cast<Table>(t)));
  if (std::filesystem::exists(std::filesystem::path(path_) / "CURRENT", error)) {
    // RocksDB refuses to open a database without every family it holds; one we do not know
    // (from a newer Kiln) is opened and left alone.
    std::vector<std::string> existing;
    rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(*db_options_, path_, &existing);
    if (!listed.ok()) {
      return FromRocksDb(listed, absl::StrCat("listing the tables of the store at ", path_));
    }
    for (const std::string& name : existing) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(names.size());
  for (const std::string& name : names) descriptors.emplace_back(name, *cf_options_);

  rocksdb::DB* raw_db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status status =
      read_only ? rocksdb::DB::OpenForReadOnly(*db_options_, path_, descriptors, &handles, &raw_db)
                : rocksdb::DB::Open(*db_options_, path_, descriptors, &handles, &raw_db);
  if (!status.ok()) {
    if (IsLockHeld(status)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the store at ", path_,
                       " is already open (by this or another process): ", status.ToString()));
    }
    if (status.IsIOError()) {
      // Out of space included: the store may open once the disk has room again.
      return absl::UnavailableError(
          absl::StrCat("opening the store at ", path_, ": ", status.ToString()));
    }
    return FromRocksDb(status, absl::StrCat("opening the store at ", path_));
  }
  auto opened = std::make_unique<Opened>();
  opened->db.reset(raw_db);
  opened->handles = std::move(handles);
  opened->read_only = read_only;
  // Open returns handles in descriptor order: default first, then the tables in enum order.
  for (int t = 0; t < kTableCount; ++t) opened->tables[t] = opened->handles[t + 1];
  return opened;
}

std::shared_ptr<RocksDbStore::Opened> RocksDbStore::Current() const {
  absl::MutexLock lock(&db_mu_);
  return db_;
}

void RocksDbStore::Replace(std::unique_ptr<Opened> next) {
  std::shared_ptr<Opened> old;
  absl::Notification closed;
  {
    absl::MutexLock lock(&db_mu_);
    old = std::move(db_);
    db_ = std::move(next);
    if (old != nullptr) {
      old->closed = &closed;
      old->avoid_flush = !writable_.load();
    }
  }
  if (old != nullptr) {
    // Calls under way finish on the old database, which closes when the last lets go; the
    // caller may need it closed (its lock file released) before opening the next.
    old.reset();
    closed.WaitForNotification();
  }
}

RocksDbStore::~RocksDbStore() {
  if (writer_.joinable()) {
    {
      absl::MutexLock lock(&group_mu_);
      stopping_ = true;
    }
    writer_.join();
  }
  Replace(nullptr);
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
// Free space is checked before a write at most this often: statvfs is cheap, but not free at
// thousands of groups a second, and space does not vanish in 100 ms (a reserve of
// min_free_bytes absorbs what does).
constexpr absl::Duration kSpaceCheckInterval = absl::Milliseconds(100);
// Failed reopens are retried after a doubling wait, up to this.
constexpr absl::Duration kMaxRecoveryBackoff = absl::Seconds(30);
// While waiting for space, the store says so in its log at most this often.
constexpr absl::Duration kWaitingLogInterval = absl::Minutes(1);
}  // namespace

absl::Status RocksDbStore::Commit(const WriteBatch& batch) {
  return CommitOverlapped(batch, [] {});
}

absl::Status RocksDbStore::CommitOverlapped(const WriteBatch& batch,
                                            absl::FunctionRef<void()> meanwhile) {
  if (batch.empty()) {
    meanwhile();
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(ValidateBatch(batch));
  if (!writable_.load(std::memory_order_acquire)) return Refused();
  commits_.fetch_add(1, std::memory_order_relaxed);
  Committer self;
  self.batch = &batch;
  if (!group_commit_) {
    meanwhile();
    return WriteOrRefuse({&self});
  }
  hoptrace::Mark("o.commit.q");
  {
    absl::MutexLock lock(&group_mu_);
    queued_.push_back(&self);
  }
  // The writer may take the batch (and even sync it) meanwhile: `written` keeps its notice.
  meanwhile();
  {
    absl::MutexLock lock(&group_mu_);
    self.written.Wait(&group_mu_);
  }
  hoptrace::Mark("o.commit.back");
  return self.status;
}

absl::Status RocksDbStore::CommitOnCaller(const WriteBatch& batch) {
  if (!group_commit_ || batch.empty()) return Commit(batch);
  bool mine = false;
  {
    absl::MutexLock lock(&group_mu_);
    mine = !writing_ && queued_.empty() && !stopping_;
    writing_ = writing_ || mine;  // The writer waits until this write has ended.
  }
  // The writer has work: join its queue (and perhaps its next group).
  if (!mine) return CommitOverlapped(batch, [] {});
  absl::Cleanup done = [this] {
    absl::MutexLock lock(&group_mu_);
    writing_ = false;
  };
  RETURN_IF_ERROR(ValidateBatch(batch));
  if (!writable_.load(std::memory_order_acquire)) return Refused();
  commits_.fetch_add(1, std::memory_order_relaxed);
  commits_on_caller_.fetch_add(1, std::memory_order_relaxed);
  if (on_caller_counter_ != nullptr) on_caller_counter_->Increment();
  Committer self;
  self.batch = &batch;
  hoptrace::Mark("o.commit.q");
  hoptrace::Mark("o.commit.w");
  absl::Status status = WriteOrRefuse({&self});
  hoptrace::Mark("o.commit.synced");
  groups_.fetch_add(1, std::memory_order_relaxed);
  if (groups_counter_ != nullptr) groups_counter_->Increment();
  hoptrace::Mark("o.commit.back");
  return status;
}

void RocksDbStore::WriterLoop() {
  std::vector<Committer*> group;
  for (;;) {
    group.clear();
    {
      absl::MutexLock lock(&group_mu_);
      // Never while a caller writes (CommitOnCaller): the two never write at once.
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(group_mu_) {
        return !writing_ && (stopping_ || !queued_.empty());
      };
      // Wakes at least every recovery_interval, so that a store whose writes stopped (perhaps
      // from a RocksDB thread, while this one waited) looks for a way back.
      group_mu_.AwaitWithTimeout(absl::Condition(&ready), options_.recovery_interval);
      if (stopping_ && queued_.empty() && !writing_) return;  // Every commit answered.
      size_t bytes = 0;
      size_t take = 0;
      while (!writing_ && take < queued_.size() && take < kMaxGroupCommits &&
             (take == 0 || bytes + queued_[take]->batch->bytes() <= kMaxGroupBytes)) {
        bytes += queued_[take]->batch->bytes();
        ++take;
      }
      group.assign(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(take));
      queued_.erase(queued_.begin(), queued_.begin() + static_cast<ptrdiff_t>(take));
      if (!group.empty()) writing_ = true;
    }
    if (!group.empty()) {
      hoptrace::Mark("o.commit.w");
      absl::Status status = WriteOrRefuse(group);
      hoptrace::Mark("o.commit.synced");
      groups_.fetch_add(1, std::memory_order_relaxed);
      if (groups_counter_ != nullptr) groups_counter_->Increment();
      absl::MutexLock lock(&group_mu_);
      writing_ = false;
      // A committer may return (and free its Committer) as soon as the lock is released:
      // nothing below touches a group member after this loop.
      for (Committer* c : group) {
        c->status = status;
        c->written.Notify();
      }
    }
    if (!writable_.load(std::memory_order_acquire) && absl::Now() >= next_recovery_) {
      next_recovery_ = absl::Now() + options_.recovery_interval;
      TryResume();
    }
  }
}

absl::Status RocksDbStore::WriteOrRefuse(const std::vector<Committer*>& group) {
  if (!writable_.load(std::memory_order_acquire)) return Refused();
  if (options_.min_free_bytes > 0) {
    const int64_t now_us = absl::ToUnixMicros(absl::Now());
    int64_t due_us = next_space_check_us_.load(std::memory_order_relaxed);
    if (now_us >= due_us && next_space_check_us_.compare_exchange_strong(
                                due_us, now_us + absl::ToInt64Microseconds(kSpaceCheckInterval))) {
      std::optional<uint64_t> free = FreeBytes(path_);
      if (free.has_value() && *free < options_.min_free_bytes) {
        StopWrites(absl::StrCat("the disk holding the store is nearly full: ", *free,
                                " bytes free, below the ", options_.min_free_bytes,
                                " the store keeps in reserve"),
                   /*reopen=*/false);
        return Refused();
      }
    }
  }
  absl::Status status = WriteGroup(group);
  if (absl::IsUnavailable(status) || absl::IsDataLoss(status) ||
      absl::IsResourceExhausted(status)) {
    // RocksDB has stopped writes (or is about to); another write would meet the WAL writer
    // that failed, where RocksDB 7.8 asserts.
    StopWrites(std::string(status.message()), /*reopen=*/true);
  }
  return status;
}

absl::Status RocksDbStore::Closed() {
  return absl::UnavailableError(
      absl::StrCat("the store at ", path_, " is being reopened, or reopening it failed (",
                   Health().reason, "): retry; it is reopened by itself"));
}

absl::Status RocksDbStore::Refused() {
  absl::MutexLock lock(&health_mu_);
  return absl::UnavailableError(absl::StrCat(
      "the store refuses writes since ", absl::FormatTime(health_.since, absl::UTCTimeZone()),
      " (nothing was written): ", health_.reason,
      "; reads go on, and writes resume by themselves once the store can write"));
}

void RocksDbStore::StopWrites(const std::string& reason, bool reopen) {
  absl::MutexLock lock(&health_mu_);
  needs_reopen_ = needs_reopen_ || reopen;
  // The first reason is the cause; what follows from it (the commits refused, RocksDB's own
  // word on the same failure) adds nothing.
  if (!health_.writable) return;
  health_.writable = false;
  health_.since = absl::Now();
  health_.reason = reason;
  writable_.store(false, std::memory_order_release);
  LogError("store.writes_stopped", {{"path", path_}, {"reason", reason}});
  if (options_.on_health_change) options_.on_health_change(health_);
}

void RocksDbStore::StillStopped(const std::string& reason) {
  absl::MutexLock lock(&health_mu_);
  if (health_.writable || health_.reason == reason) return;
  health_.reason = reason;
  if (options_.on_health_change) options_.on_health_change(health_);
}

void RocksDbStore::TryResume() {
  bool reopen;
  {
    absl::MutexLock lock(&health_mu_);
    reopen = needs_reopen_;
  }
  const uint64_t needed = options_.min_free_bytes + (reopen ? WalBytes() : 0);
  std::optional<uint64_t> free = FreeBytes(path_);
  if (free.has_value() && *free < needed) {
    if (absl::Now() >= next_waiting_log_) {
      LogWarn("store.waiting_for_space",
              {{"path", path_}, {"free_bytes", *free}, {"needed_bytes", needed}});
      next_waiting_log_ = absl::Now() + kWaitingLogInterval;
    }
    return;
  }
  if (reopen) {
    // Reads go on meanwhile from a read-only instance (which needs no lock file, so it may
    // stand beside the one being closed and the one being opened).
    bool reading_only;
    {
      std::shared_ptr<Opened> current = Current();  // let go of before any Replace
      reading_only = current != nullptr && current->read_only;
    }
    if (!reading_only) {
      absl::StatusOr<std::unique_ptr<Opened>> stand_in = OpenDb(/*read_only=*/true);
      Replace(stand_in.ok() ? std::move(*stand_in) : nullptr);
    }
    absl::StatusOr<std::unique_ptr<Opened>> opened = OpenDb(/*read_only=*/false);
    if (!opened.ok()) {
      LogWarn("store.reopen_failed",
              {{"path", path_}, {"status", opened.status()}, {"retry_in", recovery_backoff_}});
      StillStopped(
          absl::StrCat("reopening the store for writing failed: ", opened.status().message()));
      // A fault that outlasts the free-space check (an IO error, a disk that fills again)
      // should not have the store reopened every second.
      next_recovery_ = absl::Now() + recovery_backoff_;
      recovery_backoff_ = std::min(recovery_backoff_ * 2, kMaxRecoveryBackoff);
      return;
    }
    Replace(std::move(*opened));
  }
  recovery_backoff_ = options_.recovery_interval;
  absl::MutexLock lock(&health_mu_);
  LogInfo("store.writes_resumed",
          {{"path", path_}, {"stopped_for", absl::Now() - health_.since}, {"reopened", reopen}});
  needs_reopen_ = false;
  health_ = StoreHealth{};
  next_space_check_us_.store(0, std::memory_order_relaxed);
  writable_.store(true, std::memory_order_release);
  if (options_.on_health_change) options_.on_health_change(health_);
}

StoreHealth RocksDbStore::Health() {
  absl::MutexLock lock(&health_mu_);
  return health_;
}

std::optional<uint64_t> RocksDbStore::FreeBytes(const std::string& path) {
  struct statvfs fs {};
  if (::statvfs(path.c_str(), &fs) != 0) return std::nullopt;
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

uint64_t RocksDbStore::WalBytes() const {
  uint64_t total = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(path_, error)) {
    if (entry.path().extension() != ".log") continue;
    uint64_t size = entry.file_size(error);
    if (!error) total += size;
  }
  return total;
}

absl::Status RocksDbStore::WriteGroup(const std::vector<Committer*>& group) {
  std::shared_ptr<Opened> db = Current();
  if (db == nullptr || db->read_only) return Refused();
  size_t bytes = 0;
  size_t ops = 0;
  // One synced batch syncs the group: the WAL is synced as a whole, the unsynced batches with it.
  bool sync = false;
  for (const Committer* c : group) {
    bytes += c->batch->bytes();
    ops += c->batch->size();
    sync = sync || c->batch->sync();
  }
  // Roughly the batch's encoded size, so building it does not reallocate for large values.
  rocksdb::WriteBatch write(bytes + 16 * ops + 12);
  for (const Committer* c : group) {
    for (const WriteBatch::Op& op : c->batch->ops()) {
      rocksdb::ColumnFamilyHandle* table = db->tables[static_cast<size_t>(op.table)];
      rocksdb::Status added = op.type == WriteBatch::OpType::kPut
                                  ? write.Put(table, op.key, op.value)
                                  : write.Delete(table, op.key);
      if (!added.ok()) return FromRocksDb(added, "building the write batch");
    }
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = sync;
  return FromRocksDbWrite(db->db->Write(write_options, &write));
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Get(Table table, std::string_view key) {
  if (!IsKnownTable(table)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown table ", static_cast<int>(table)));
  }
  std::shared_ptr<Opened> db = Current();
  if (db == nullptr) return Closed();
  rocksdb::PinnableSlice value;
  rocksdb::Status status =
      db->db->Get(rocksdb::ReadOptions(), db->tables[static_cast<size_t>(table)],
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
  std::shared_ptr<Opened> db = Current();
  if (db == nullptr) return Closed();
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
      db->db->NewIterator(read_options, db->tables[static_cast<size_t>(table)]));
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
  std::shared_ptr<Opened> db = Current();
  if (db == nullptr) return 0;
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* table : db->tables) {
    uint64_t value = 0;
    if (db->db->GetIntProperty(table, rocksdb::DB::Properties::kLiveSstFilesSize, &value)) {
      total += value;
    }
    if (db->db->GetIntProperty(table, rocksdb::DB::Properties::kCurSizeAllMemTables, &value)) {
      total += value;
    }
  }
  return total;
}

absl::Status RocksDbStore::Flush() {
  std::shared_ptr<Opened> db = Current();
  if (db == nullptr) return Closed();
  std::vector<rocksdb::ColumnFamilyHandle*> tables(db->tables.begin(), db->tables.end());
  return FromRocksDb(db->db->Flush(rocksdb::FlushOptions(), tables), "flushing the store");
}

RocksDbStats RocksDbStore::Stats() const {
  RocksDbStats stats;
  stats.commits = commits_.load(std::memory_order_relaxed);
  stats.wal_syncs = statistics_->getTickerCount(rocksdb::WAL_FILE_SYNCED);
  stats.writes_done_by_self = statistics_->getTickerCount(rocksdb::WRITE_DONE_BY_SELF);
  stats.writes_done_by_other = statistics_->getTickerCount(rocksdb::WRITE_DONE_BY_OTHER);
  stats.groups = groups_.load(std::memory_order_relaxed);
  stats.commits_on_caller = commits_on_caller_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace kiln::orchestrator
