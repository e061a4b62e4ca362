#include "common/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/civetweb_stop.h"

namespace kiln {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60};
  return *buckets;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  if (address.empty()) return std::unique_ptr<MetricsServer>();
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb reports a failed bind by throwing; no exception leaves this function.
    exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  auto ports = exposer->GetListeningPorts();
  int port = ports.empty() ? 0 : ports.front();
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(exposer), address, port));
}

MetricsServer::~MetricsServer() {
  if (exposer_ == nullptr) return;
  StopWakingListener([this] { exposer_.reset(); }, address_, port_);
}

}  // namespace kiln
