#include "orchestrator/persistence/metered_store.h"

#include <catch2/catch.hpp>
#include <string>

#include "common/clock.h"
#include "orchestrator/persistence/fault_injecting_store.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

// A base store whose commits take 3 ms of fake time and gets 1 ms.
class SlowStore final : public Store {
 public:
  SlowStore(Store& base, FakeClock& clock) : base_(base), clock_(clock) {}
  absl::Status Commit(const WriteBatch& batch) override {
    clock_.Advance(absl::Milliseconds(3));
    return base_.Commit(batch);
  }
  absl::StatusOr<std::optional<std::string>> Get(Table table, std::string_view key) override {
    clock_.Advance(absl::Milliseconds(1));
    return base_.Get(table, key);
  }
  absl::Status Scan(Table table, std::string_view start, std::string_view end, size_t limit,
                    const ScanVisitor& visit) override {
    return base_.Scan(table, start, end, limit, visit);
  }
  absl::Status ReverseScan(Table table, std::string_view start, std::string_view end, size_t limit,
                           const ScanVisitor& visit) override {
    return base_.ReverseScan(table, start, end, limit, visit);
  }
  uint64_t ApproximateSize() override { return base_.ApproximateSize(); }

 private:
  Store& base_;
  FakeClock& clock_;
};

const prometheus::MetricFamily* FindFamily(const std::vector<prometheus::MetricFamily>& families,
                                           const std::string& name) {
  for (const auto& family : families) {
    if (family.name == name) return &family;
  }
  return nullptr;
}

const prometheus::ClientMetric* FindMetric(const prometheus::MetricFamily& family,
                                           const std::string& label, const std::string& value) {
  for (const auto& metric : family.metric) {
    for (const auto& pair : metric.label) {
      if (pair.name == label && pair.value == value) return &metric;
    }
  }
  return nullptr;
}

TEST_CASE("MeteredStore records latency by op, errors, and batch sizes") {
  MemoryStore memory;
  FakeClock clock;
  SlowStore slow(memory, clock);
  FaultInjectingStore faulty(slow);
  prometheus::Registry registry;
  MeteredStore store(faulty, registry, clock);

  WriteBatch batch;
  batch.Put(Table::kMeta, "key", "value");  // 8 bytes
  batch.Delete(Table::kMeta, "gone");       // 4 bytes
  REQUIRE(store.Commit(batch).ok());
  REQUIRE(store.Get(Table::kMeta, "key").ok());
  faulty.FailNextReads(1);
  CHECK_FALSE(store.Scan(Table::kMeta, "", "", 0, [](auto, auto) { return true; }).ok());

  auto families = registry.Collect();
  const auto* latency = FindFamily(families, "kiln_persistence_latency_seconds");
  REQUIRE(latency != nullptr);
  const auto* commit = FindMetric(*latency, "op", "commit");
  REQUIRE(commit != nullptr);
  CHECK(commit->histogram.sample_count == 1);
  CHECK(commit->histogram.sample_sum == Approx(0.003));
  const auto* get = FindMetric(*latency, "op", "get");
  REQUIRE(get != nullptr);
  CHECK(get->histogram.sample_sum == Approx(0.001));
  const auto* scan = FindMetric(*latency, "op", "scan");
  REQUIRE(scan != nullptr);
  CHECK(scan->histogram.sample_count == 1);

  const auto* errors = FindFamily(families, "kiln_persistence_errors_total");
  REQUIRE(errors != nullptr);
  REQUIRE(errors->metric.size() == 1);
  const auto* scan_errors = FindMetric(*errors, "code", "UNAVAILABLE");
  REQUIRE(scan_errors != nullptr);
  CHECK(scan_errors->counter.value == 1);

  const auto* ops = FindFamily(families, "kiln_persistence_commit_batch_ops");
  REQUIRE(ops != nullptr);
  CHECK(ops->metric.at(0).histogram.sample_sum == 2);
  const auto* bytes = FindFamily(families, "kiln_persistence_commit_batch_bytes");
  REQUIRE(bytes != nullptr);
  CHECK(bytes->metric.at(0).histogram.sample_sum == 12);
}

}  // namespace
}  // namespace kiln::orchestrator
