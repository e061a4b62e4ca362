// Per-RPC request counts (by status code) and latency histograms.
#pragma once

#include <map>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln::orchestrator {

class RpcMetrics {
 public:
  // `registry` may be null (no metrics).
  explicit RpcMetrics(prometheus::Registry* registry);
  void Record(const char* method, const absl::Status& status, absl::Duration latency);

 private:
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* latency_ = nullptr;
  absl::Mutex mu_;
  std::map<std::string, prometheus::Histogram*> histograms_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int>, prometheus::Counter*> counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
