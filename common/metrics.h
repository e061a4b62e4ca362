// Metrics: one prometheus-cpp registry per process, served on /metrics by one exposer.
#pragma once

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace kiln {

// Latency buckets in seconds, from 50 µs to 60 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

class MetricsServer {
 public:
  // Serves `registry` at http://<address>/metrics. An address of "" serves nothing.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);

  // Stops serving in milliseconds (common/civetweb_stop.h).
  ~MetricsServer();

  // The port actually bound (useful with port 0).
  int port() const { return port_; }

 private:
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, std::string address, int port)
      : exposer_(std::move(exposer)), address_(std::move(address)), port_(port) {}

  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
  int port_;
};

}  // namespace kiln
