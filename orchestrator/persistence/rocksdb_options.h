// Tuning of the RocksDB store, sized so that the whole orchestrator stays under ~150 MiB RSS on
// a small host: RocksDB's share is about block_cache_bytes + total_write_buffer_bytes plus a few
// MiB of table-reader and iterator overhead (~40 MiB with the defaults; the engine benchmark
// measured 126 MiB peak RSS for the whole orchestrator with these, 179 MiB with 32+32 MiB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/time/time.h"
#include "orchestrator/persistence/store.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace kiln::orchestrator {

struct RocksDbOptions {
  // One LRU cache shared by every table for data, index and filter blocks. Index and filter
  // blocks are charged to it as well, so it bounds read-side memory however large the data.
  size_t block_cache_bytes = 16 << 20;

  // Size at which one table's memtable is switched out and flushed to an SST file.
  size_t write_buffer_bytes = 8 << 20;
  // Memtables per table (the active one plus those being flushed) before writes stall.
  int max_write_buffers = 2;
  // All tables' memtables together: a shared WriteBufferManager flushes when they reach this,
  // so nine tables do not each fill their own write_buffer_bytes. At 16 MiB every table
  // flushed ~70 times in the engine benchmark's a,b run, the small ones in files of a few
  // hundred KiB that compaction then merged into a 4 MiB file, again and again; at 32 MiB they
  // flush 12-30 times (history 61), compaction writes 203 MiB instead of 349, and (b) after (a)
  // runs at ~2,200-2,700 /s instead of ~1,600, with peak RSS within 5 MiB.
  size_t total_write_buffer_bytes = 32 << 20;

  // Size of the SST files compaction writes. Most keys grow with time (run ids are time-ordered,
  // timers are keyed by fire time), so a flushed file overlaps only the newest files of the
  // level below, and compaction rewrites just those: small files keep that rewrite small.
  uint64_t target_file_bytes = 4 << 20;

  // The WAL is kept until every table has flushed what it covers. Past this size RocksDB
  // flushes the laggards, which bounds both disk use and recovery (WAL replay) time.
  uint64_t max_total_wal_bytes = 64 << 20;

  // Group synced commits ourselves (see rocksdb_store.h); false leaves it to RocksDB's write
  // group (kiln-store-bench compares the two).
  bool group_commit = true;

  // Flush and compaction threads: a 2-core host should not give more to background work.
  int max_background_jobs = 2;
  // Open SST files (each costs a file descriptor and a table reader's small footprint).
  int max_open_files = 256;

  // RocksDB's own info LOG in the store directory: rotated at this size, this many kept.
  size_t max_info_log_bytes = 4 << 20;
  size_t keep_info_log_files = 3;

  // Writes stop (Commit answers kUnavailable, reads go on) while the filesystem holding the
  // store has less than this free, so that RocksDB itself rarely meets a full disk: a flush
  // needs room for the memtables (total_write_buffer_bytes) and compaction for a few files.
  // They resume once this much is free again. 0: only a failed write stops them.
  uint64_t min_free_bytes = 64 << 20;
  // How often a store that stopped writing checks whether it can write again (free space, then
  // a reopen of the database when RocksDB itself stopped).
  absl::Duration recovery_interval = absl::Seconds(1);
  // Called whenever writes stop or resume (and when the reason for refusing them changes), from
  // the store's writer thread or one of RocksDB's; must not call back into the store.
  std::function<void(const StoreHealth&)> on_health_change;
  // The Env RocksDB runs on; null: RocksDB's default. Tests pass one that injects IO errors.
  rocksdb::Env* env = nullptr;
  // Where the group commit's counters go (not owned; must outlive the store):
  // kiln_store_commit_groups_total, one per synced write (a group of commits sharing its
  // fsync), and kiln_store_commits_on_caller_total, the groups a committing thread wrote itself
  // (CommitOnCaller). With kiln_persistence_latency_seconds_count{op="commit"} they give the
  // commits per fsync. Null: none.
  prometheus::Registry* registry = nullptr;
};

}  // namespace kiln::orchestrator
