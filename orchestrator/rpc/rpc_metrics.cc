#include "orchestrator/rpc/rpc_metrics.h"

#include "absl/status/status.h"
#include "common/metrics.h"

namespace kiln::orchestrator {

RpcMetrics::RpcMetrics(prometheus::Registry* registry) {
  if (registry == nullptr) return;
  requests_ = &prometheus::BuildCounter()
                   .Name("kiln_rpc_requests_total")
                   .Help("WorkflowService calls, by method and status code")
                   .Register(*registry);
  latency_ = &prometheus::BuildHistogram()
                  .Name("kiln_rpc_latency_seconds")
                  .Help("WorkflowService call latency (long polls include their wait)")
                  .Register(*registry);
}

void RpcMetrics::Record(const char* method, const absl::Status& status, absl::Duration latency) {
  if (requests_ == nullptr) return;
  prometheus::Counter* counter;
  prometheus::Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    auto key = std::make_pair(std::string(method), static_cast<int>(status.code()));
    auto it = counters_.find(key);
    if (it == counters_.end()) {
      it = counters_
               .emplace(key, &requests_->Add({{"method", method},
                                              {"code", absl::StatusCodeToString(status.code())}}))
               .first;
    }
    counter = it->second;
    auto h = histograms_.find(method);
    if (h == histograms_.end()) {
      h = histograms_.emplace(method, &latency_->Add({{"method", method}}, LatencyBuckets())).first;
    }
    histogram = h->second;
  }
  counter->Increment();
  histogram->Observe(absl::ToDoubleSeconds(latency));
}

}  // namespace kiln::orchestrator
