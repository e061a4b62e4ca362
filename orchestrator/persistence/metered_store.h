// A Store wrapper that records persistence metrics: latency per operation (commit, get, scan,
// reverse_scan), errors per operation and status code, and the size of committed batches (ops
// and bytes). Wrapping keeps metrics out of the implementations and lets any store be metered.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/clock.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

class MeteredStore final : public Store {
 public:
  // `base`, `registry` and `clock` are not owned and must outlive this wrapper. Latency is
  // read from `clock`, so a simulation's fake clock gives deterministic histograms.
  MeteredStore(Store& base, prometheus::Registry& registry, Clock& clock);
  MeteredStore(const MeteredStore&) = delete;
  MeteredStore& operator=(const MeteredStore&) = delete;

  absl::Status Commit(const WriteBatch& batch) override;
  absl::Status CommitOverlapped(const WriteBatch& batch,
                                absl::FunctionRef<void()> meanwhile) override;
  absl::Status CommitOnCaller(const WriteBatch& batch) override;
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override;
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override;
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override;
  uint64_t ApproximateSize() override { return base_.ApproximateSize(); }
  StoreHealth Health() override { return base_.Health(); }
  absl::StatusOr<int64_t> FetchAdd(Table table, std::string_view key, int64_t delta) override {
    return base_.FetchAdd(table, key, delta);
  }

 private:
  enum Op { kCommit, kGet, kScan, kReverseScan, kOpCount };
  // Records the latency since `start` for `op` and, when `status` failed, an error.
  void Record(Op op, absl::Time start, const absl::Status& status);
  // One commit of `batch` through `commit` (a call on base_), recorded.
  absl::Status MeteredCommit(const WriteBatch& batch, absl::FunctionRef<absl::Status()> commit);

  Store& base_;
  Clock& clock_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Histogram* latency_[kOpCount];
  prometheus::Histogram& batch_ops_;
  prometheus::Histogram& batch_bytes_;
};

}  // namespace kiln::orchestrator
