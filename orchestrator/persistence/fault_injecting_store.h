// A Store wrapper that fails operations on command, for testing how the engine handles storage
// faults: a commit refused before it is applied, a commit that is applied but reported as
// failed ("outcome unknown", the ambiguity store.h allows after an IO error), failing reads,
// and a power cut that loses every write not yet durable. Faults come from a queue the test
// fills ("fail the next N commits") or from a policy callback a deterministic simulation drives
// with its seeded random source.
//
// The power cut's model is RocksDB's WAL: a write is durable once a synced commit at or after it
// succeeded. Before that it sits in the log unsynced: a batch committed with sync = false, and a
// batch applied and then reported failed (its log write done, its sync failed). A power cut
// keeps a prefix of the unsynced writes (the log is written in order; point-in-time recovery
// stops at the first record missing) and loses the rest.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

class FaultInjectingStore final : public Store {
 public:
  enum class CommitFaultMode {
    kBeforeApply,  // the batch never reaches the base store
    kAfterApply,   // the base store applies the batch, then the caller is told it failed
  };
  struct CommitFault {
    CommitFaultMode mode = CommitFaultMode::kBeforeApply;
    absl::Status status = absl::UnavailableError("injected commit fault");
  };
  // Decides, per commit, whether to inject a fault. Called without any lock of this store held.
  using CommitFaultPolicy = std::function<std::optional<CommitFault>(const WriteBatch&)>;

  // `base` is not owned and must outlive this wrapper.
  explicit FaultInjectingStore(Store& base) : base_(base) {}
  FaultInjectingStore(const FaultInjectingStore&) = delete;
  FaultInjectingStore& operator=(const FaultInjectingStore&) = delete;

  // The next `count` commits fail as `mode` says, with `status` (an OK one
  // is replaced by kUnavailable: an injected fault always fails).
  void FailNextCommits(int count, CommitFaultMode mode,
                       absl::Status status = absl::UnavailableError("injected commit fault"));
  // The next `count` reads (Get, Scan, ReverseScan) fail with `status` before reaching the base.
  void FailNextReads(int count,
                     absl::Status status = absl::UnavailableError("injected read fault"));
  // Consulted for commits the FailNextCommits queue does not claim. Empty clears it.
  void SetCommitFaultPolicy(CommitFaultPolicy policy);
  // Drops every pending fault and the policy; counters are kept.
  void ClearFaults();

  // Starts remembering, for each write not yet durable, what it overwrote, so that CutPower can
  // take it back. Commits are then serialised (each reads its keys' old values first): a test
  // store, not a fast one.
  void TrackUnsyncedWrites();
  // A power cut: the unsynced writes after the first `keep` of them are taken back, the newest
  // first, and the rest become durable (what survived a cut is on disk). Returns how many
  // batches were lost. Needs TrackUnsyncedWrites. An error means the base store refused to
  // take a write back (its state is then no disk's after a cut).
  absl::StatusOr<size_t> CutPower(size_t keep = 0);
  // Writes applied to the base store that a power cut would lose now.
  size_t unsynced_batches() const;
  // A broken store, to prove that the tests above it notice: every commit is acknowledged
  // unsynced, as RocksDB with WriteOptions::sync = false everywhere, so a cut loses
  // acknowledged writes.
  void IgnoreSync(bool ignore);

  absl::Status Commit(const WriteBatch& batch) override;
  // As Commit; counted apart (commits_on_caller) so a test sees which call its caller made.
  absl::Status CommitOnCaller(const WriteBatch& batch) override;
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override;
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override;
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override;
  uint64_t ApproximateSize() override { return base_.ApproximateSize(); }
  StoreHealth Health() override { return base_.Health(); }

  // Commit calls received (CommitOnCaller's included).
  int64_t commits() const;
  // CommitOnCaller calls received.
  int64_t commits_on_caller() const;
  // Commits the base store applied (including those then reported as failed).
  int64_t commits_applied() const;
  // Commits and reads failed by injection.
  int64_t injected_commit_faults() const;
  int64_t injected_read_faults() const;
  // Power cuts, and the batches they took back.
  int64_t power_cuts() const;
  int64_t batches_lost() const;

 private:
  // The fault for the next commit, if any, counting it.
  std::optional<CommitFault> TakeCommitFault(const WriteBatch& batch);
  // The status to fail the next read with, or OK.
  absl::Status TakeReadFault();
  // Commit while tracking unsynced writes: what `batch` overwrites is read first, kept while
  // the write is not durable.
  absl::Status CommitTracked(const WriteBatch& batch, const std::optional<CommitFault>& fault);

  // What it takes to undo one unsynced batch: the old value (or absence) of each key it wrote.
  struct Undo {
    WriteBatch restore;
  };

  Store& base_;
  // Held across a tracked commit (its reads of old values and its write) and a power cut.
  absl::Mutex apply_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<Undo> unsynced_ ABSL_GUARDED_BY(apply_mu_);
  mutable absl::Mutex mu_;
  int pending_commit_faults_ ABSL_GUARDED_BY(mu_) = 0;
  CommitFault commit_fault_ ABSL_GUARDED_BY(mu_);
  int pending_read_faults_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status read_fault_ ABSL_GUARDED_BY(mu_);
  CommitFaultPolicy policy_ ABSL_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t commits_on_caller_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t commits_applied_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t injected_commit_faults_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t injected_read_faults_ ABSL_GUARDED_BY(mu_) = 0;
  bool track_unsynced_ ABSL_GUARDED_BY(mu_) = false;
  bool ignore_sync_ ABSL_GUARDED_BY(mu_) = false;
  size_t unsynced_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t power_cuts_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t batches_lost_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::orchestrator
