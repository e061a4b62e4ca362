#include "orchestrator/persistence/metered_store.h"

#include <algorithm>
#include <string>

#include "common/metrics.h"

namespace kiln::orchestrator {
namespace {

constexpr const char* kOpNames[] = {"commit", "get", "scan", "reverse_scan"};

prometheus::Histogram::BucketBoundaries Powers(double first, double factor, int count) {
  prometheus::Histogram::BucketBoundaries bounds;
  for (double bound = first; count-- > 0; bound *= factor) bounds.push_back(bound);
  return bounds;
}

}  // namespace

MeteredStore::MeteredStore(Store& base, prometheus::Registry& registry, Clock& clock)
    : base_(base),
      clock_(clock),
      errors_(prometheus::BuildCounter()
                  .Name("kiln_persistence_errors_total")
                  .Help("Failed store operations, by operation and status code")
                  .Register(registry)),
      batch_ops_(prometheus::BuildHistogram()
                     .Name("kiln_persistence_commit_batch_ops")
                     .Help("Operations per write batch submitted for commit")
                     .Register(registry)
                     .Add({}, Powers(1, 2, 14))),  // 1 .. 8192
      batch_bytes_(prometheus::BuildHistogram()
                       .Name("kiln_persistence_commit_batch_bytes")
                       .Help("Key and value bytes per write batch submitted for commit")
                       .Register(registry)
                       .Add({}, Powers(64, 4, 12))) {  // 64 B .. 256 MiB
  auto& latency = prometheus::BuildHistogram()
                      .Name("kiln_persistence_latency_seconds")
                      .Help("Latency of store operations, by operation")
                      .Register(registry);
  for (int op = 0; op < kOpCount; ++op) {
    latency_[op] = &latency.Add({{"op", kOpNames[op]}}, LatencyBuckets());
  }
}

void MeteredStore::Record(Op op, absl::Time start, const absl::Status& status) {
  // A wall clock can step backwards; a negative latency would corrupt the histogram's sum.
  latency_[op]->Observe(std::max(0.0, absl::ToDoubleSeconds(clock_.Now() - start)));
  if (!status.ok()) {
    errors_.Add({{"op", kOpNames[op]}, {"code", absl::StatusCodeToString(status.code())}})
        .Increment();
  }
}

absl::Status MeteredStore::MeteredCommit(const WriteBatch& batch,
                                         absl::FunctionRef<absl::Status()> commit) {
  batch_ops_.Observe(static_cast<double>(batch.size()));
  batch_bytes_.Observe(static_cast<double>(batch.bytes()));
  absl::Time start = clock_.Now();
  absl::Status status = commit();
  Record(kCommit, start, status);
  return status;
}

absl::Status MeteredStore::Commit(const WriteBatch& batch) {
  return MeteredCommit(batch, [&] { return base_.Commit(batch); });
}

absl::Status MeteredStore::CommitOverlapped(const WriteBatch& batch,
                                            absl::FunctionRef<void()> meanwhile) {
  return MeteredCommit(batch, [&] { return base_.CommitOverlapped(batch, meanwhile); });
}

absl::Status MeteredStore::CommitOnCaller(const WriteBatch& batch) {
  return MeteredCommit(batch, [&] { return base_.CommitOnCaller(batch); });
}

absl::StatusOr<std::optional<std::string>> MeteredStore::Get(Table table, std::string_view key) {
  absl::Time start = clock_.Now();
  absl::StatusOr<std::optional<std::string>> value = base_.Get(table, key);
  Record(kGet, start, value.status());
  return value;
}

absl::Status MeteredStore::Scan(Table table, std::string_view start, std::string_view end,
                                size_t limit, const ScanVisitor& visit) {
  // Includes the visitor's time: a slow visitor holds the scan's snapshot open just as long.
  absl::Time began = clock_.Now();
  absl::Status status = base_.Scan(table, start, end, limit, visit);
  Record(kScan, began, status);
  return status;
}

absl::Status MeteredStore::ReverseScan(Table table, std::string_view start, std::string_view end,
                                       size_t limit, const ScanVisitor& visit) {
  absl::Time began = clock_.Now();
  absl::Status status = base_.ReverseScan(table, start, end, limit, visit);
  Record(kReverseScan, began, status);
  return status;
}

}  // namespace kiln::orchestrator
