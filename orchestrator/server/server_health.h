// What the orchestrator says about its own health, in one place: gRPC's health service and
// Prometheus gauges. Two things can be wrong while the process runs:
// - the store refuses writes (a full disk; see persistence/rocksdb_store.h): reads are still
//   served, so the server as a whole ("") stays SERVING and the service "kiln.store.writes"
//   turns NOT_SERVING; gauge kiln_store_writable is 0;
// - the listener cannot accept connections (out of file descriptors): nothing new can be
//   served, so "" turns NOT_SERVING; gauge kiln_listener_accepting{listener="grpc"} is 0
//   (common/listener_health.h, shared with kiln-worker).
// Each report may come from any thread, before or after the gRPC server exists.
#pragma once

#include <string>

#include <grpcpp/health_check_service_interface.h>
#include <prometheus/registry.h>

#include "absl/synchronization/mutex.h"
#include "common/listener_health.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

// The gRPC health service name that reports whether the store takes writes.
inline constexpr char kStoreWritesHealthService[] = "kiln.store.writes";

class ServerHealth {
 public:
  explicit ServerHealth(prometheus::Registry& registry);

  void StoreChanged(const StoreHealth& health);
  void ListenerChanged(bool accepting);

  // From now on (until Detach) the statuses are published to `service` too.
  void Attach(grpc::HealthCheckServiceInterface* service);
  void Detach();

 private:
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Gauge& store_writable_;
  prometheus::Counter& store_write_stops_;
  ListenerHealth listeners_;
  absl::Mutex mu_;
  bool store_writable_now_ ABSL_GUARDED_BY(mu_) = true;
  grpc::HealthCheckServiceInterface* service_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace kiln::orchestrator
