// Whether a process's listeners accept new connections, as ConnectionListener's self-probe
// finds (connection_listener.h), in one place: the gauge kiln_listener_accepting{listener} and
// gRPC's health service, whose server-wide status ("") is SERVING only while every listener
// reported accepts. The orchestrator has one listener ("grpc"); kiln-worker two ("grpc" for
// BuildService, "http" for webhooks). Reports may come from any thread, before or after the
// gRPC server exists.
#pragma once

#include <map>
#include <string>

#include <grpcpp/health_check_service_interface.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln {

class ListenerHealth {
 public:
  explicit ListenerHealth(prometheus::Registry& registry);

  // Listener `name` accepts (or not). A listener is counted from its first report on.
  void Changed(const std::string& name, bool accepting);
  // Every listener reported accepts.
  bool accepting() const;

  // From now on (until Detach) the server-wide status is published to `service` too.
  void Attach(grpc::HealthCheckServiceInterface* service);
  void Detach();

 private:
  bool AllAcceptingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Gauge>& gauges_;
  mutable absl::Mutex mu_;
  std::map<std::string, bool> accepting_ ABSL_GUARDED_BY(mu_);
  grpc::HealthCheckServiceInterface* service_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace kiln
