#include "orchestrator/persistence/fault_injecting_store.h"

#include <utility>

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
  absl::Status status = base_.Commit(batch);
  if (!status.ok()) return status;
  {
    absl::MutexLock lock(&mu_);
    ++commits_applied_;
  }
  return fault.has_value() ? fault->status : status;
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
