#include "orchestrator/persistence/fault_injecting_store.h"

#include <algorithm>
#include <utility>

#include "common/status.h"

namespace kiln::orchestrator {
namespace {

// An injected fault must fail: an OK status would claim success for a batch never applied.
absl::Status NotOk(absl::Status status, const char* fallback) {
  if (status.ok()) return absl::UnavailableError(fallback);
  return status;
}

}  // namespace

void FaultInjectingStore::FailNextCommits(int count, CommitFaultMode mode, absl::Status status) {
  absl::MutexLock lock(&mu_);
  pending_commit_faults_ = count;
  commit_fault_ = CommitFault{mode, NotOk(std::move(status), "injected commit fault")};
}

void FaultInjectingStore::FailNextReads(int count, absl::Status status) {
  absl::MutexLock lock(&mu_);
  pending_read_faults_ = count;
  read_fault_ = NotOk(std::move(status), "injected read fault");
}

void FaultInjectingStore::SetCommitFaultPolicy(CommitFaultPolicy policy) {
  absl::MutexLock lock(&mu_);
  policy_ = std::move(policy);
}

void FaultInjectingStore::ClearFaults() {
  absl::MutexLock lock(&mu_);
  pending_commit_faults_ = 0;
  pending_read_faults_ = 0;
  policy_ = nullptr;
}

std::optional<FaultInjectingStore::CommitFault> FaultInjectingStore::TakeCommitFault(
    const WriteBatch& batch) {
  CommitFaultPolicy policy;
  {
    absl::MutexLock lock(&mu_);
    ++commits_;
    if (pending_commit_faults_ > 0) {
      --pending_commit_faults_;
      ++injected_commit_faults_;
      return commit_fault_;
    }
    policy = policy_;
  }
  // Run outside the lock: a policy may well call back into this store's setters.
  std::optional<CommitFault> fault = policy ? policy(batch) : std::nullopt;
  if (fault.has_value()) {
    fault->status = NotOk(std::move(fault->status), "injected commit fault");
    absl::MutexLock lock(&mu_);
    ++injected_commit_faults_;
  }
  return fault;
}

absl::Status FaultInjectingStore::TakeReadFault() {
  absl::MutexLock lock(&mu_);
  if (pending_read_faults_ == 0) return absl::OkStatus();
  --pending_read_faults_;
  ++injected_read_faults_;
  return read_fault_;
}

absl::Status FaultInjectingStore::Commit(const WriteBatch& batch) {
  std::optional<CommitFault> fault = TakeCommitFault(batch);
  if (fault.has_value() && fault->mode == CommitFaultMode::kBeforeApply) return fault->status;
  bool track;
  {
    absl::MutexLock lock(&mu_);
    track = track_unsynced_;
  }
  if (track) return CommitTracked(batch, fault);
  absl::Status status = base_.Commit(batch);
  if (!status.ok()) return status;
  {
    absl::MutexLock lock(&mu_);
    ++commits_applied_;
  }
  return fault.has_value() ? fault->status : status;
}

absl::Status FaultInjectingStore::CommitTracked(const WriteBatch& batch,
                                                const std::optional<CommitFault>& fault) {
  absl::MutexLock apply(&apply_mu_);
  Undo undo;
  std::vector<std::pair<Table, std::string_view>> seen;
  for (const WriteBatch::Op& op : batch.ops()) {
    std::pair<Table, std::string_view> key(op.table, op.key);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    // Straight from the base: an injected read fault is for the engine's reads, not ours.
    absl::StatusOr<std::optional<std::string>> old = base_.Get(op.table, op.key);
    if (!old.ok()) return old.status();  // nothing applied yet: a clean failure
    if (old->has_value()) {
      undo.restore.Put(op.table, op.key, **old);
    } else {
      undo.restore.Delete(op.table, op.key);
    }
  }
  absl::Status status = base_.Commit(batch);
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  ++commits_applied_;
  if (!fault.has_value() && batch.sync() && !ignore_sync_) {
    // A sync point: the log is synced as a whole, every write before this one with it.
    unsynced_.clear();
  } else {
    unsynced_.push_back(std::move(undo));
  }
  unsynced_count_ = unsynced_.size();
  return fault.has_value() ? fault->status : status;
}

void FaultInjectingStore::TrackUnsyncedWrites() {
  absl::MutexLock lock(&mu_);
  track_unsynced_ = true;
}

void FaultInjectingStore::IgnoreSync(bool ignore) {
  absl::MutexLock lock(&mu_);
  ignore_sync_ = ignore;
}

absl::StatusOr<size_t> FaultInjectingStore::CutPower(size_t keep) {
  absl::MutexLock apply(&apply_mu_);
  size_t lost = 0;
  while (unsynced_.size() > keep) {
    // Taking back is itself a commit to the base store; one refused leaves a state no disk
    // could hold after a power cut, so the caller must stop.
    absl::Status undone = base_.Commit(unsynced_.back().restore);
    if (!undone.ok()) return Annotate(undone, "taking back an unsynced write");
    unsynced_.pop_back();
    ++lost;
  }
  unsynced_.clear();
  absl::MutexLock lock(&mu_);
  unsynced_count_ = 0;
  ++power_cuts_;
  batches_lost_ += static_cast<int64_t>(lost);
  return lost;
}

size_t FaultInjectingStore::unsynced_batches() const {
  absl::MutexLock lock(&mu_);
  return unsynced_count_;
}

int64_t FaultInjectingStore::power_cuts() const {
  absl::MutexLock lock(&mu_);
  return power_cuts_;
}

int64_t FaultInjectingStore::batches_lost() const {
  absl::MutexLock lock(&mu_);
  return batches_lost_;
}

absl::StatusOr<std::optional<std::string>> FaultInjectingStore::Get(Table table,
                                                                    std::string_view key) {
  if (absl::Status fault = TakeReadFault(); !fault.ok()) return fault;
  return base_.Get(table, key);
}

absl::Status FaultInjectingStore::Scan(Table table, std::string_view start, std::string_view end,
                                       size_t limit, const ScanVisitor& visit) {
  if (absl::Status fault = TakeReadFault(); !fault.ok()) return fault;
  return base_.Scan(table, start, end, limit, visit);
}

absl::Status FaultInjectingStore::ReverseScan(Table table, std::string_view start,
                                              std::string_view end, size_t limit,
                                              const ScanVisitor& visit) {
  if (absl::Status fault = TakeReadFault(); !fault.ok()) return fault;
  return base_.ReverseScan(table, start, end, limit, visit);
}

int64_t FaultInjectingStore::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

int64_t FaultInjectingStore::commits_on_caller() const {
  absl::MutexLock lock(&mu_);
  return commits_on_caller_;
}

absl::Status FaultInjectingStore::CommitOnCaller(const WriteBatch& batch) {
  {
    absl::MutexLock lock(&mu_);
    ++commits_on_caller_;
  }
  return Commit(batch);
}

int64_t FaultInjectingStore::commits_applied() const {
  absl::MutexLock lock(&mu_);
  return commits_applied_;
}

int64_t FaultInjectingStore::injected_commit_faults() const {
  absl::MutexLock lock(&mu_);
  return injected_commit_faults_;
}

int64_t FaultInjectingStore::injected_read_faults() const {
  absl::MutexLock lock(&mu_);
  return injected_read_faults_;
}

}  // namespace kiln::orchestrator
