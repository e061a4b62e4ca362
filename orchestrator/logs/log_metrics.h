// Metrics of log streams: kiln_log_appended_bytes_total, kiln_log_appends_total{result}
// (written | duplicate, a retried append acknowledged without writing) and kiln_log_followers
// (follows open now).
#pragma once

#include <cstddef>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace kiln::orchestrator {

class LogMetrics {
 public:
  // `registry` may be null (no metrics).
  explicit LogMetrics(prometheus::Registry* registry);

  void Written(size_t bytes);
  void Duplicate();
  void FollowerStarted();
  void FollowerEnded();

 private:
  prometheus::Counter* bytes_ = nullptr;
  prometheus::Counter* written_ = nullptr;
  prometheus::Counter* duplicates_ = nullptr;
  prometheus::Gauge* followers_ = nullptr;
};

}  // namespace kiln::orchestrator
