#include "orchestrator/server/server_health.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

namespace kiln::orchestrator {

ServerHealth::ServerHealth(prometheus::Registry& registry)
    : store_writable_(prometheus::BuildGauge()
                          .Name("kiln_store_writable")
                          .Help("1 while the store takes writes, 0 while it refuses them (a "
                                "full disk, a failed write); reads are served either way")
                          .Register(registry)
                          .Add({})),
      store_write_stops_(prometheus::BuildCounter()
                             .Name("kiln_store_write_stops_total")
                             .Help("Times the store stopped taking writes")
                             .Register(registry)
                             .Add({})),
      listeners_(registry) {
  store_writable_.Set(1);
  listeners_.Changed("grpc", true);
}

void ServerHealth::StoreChanged(const StoreHealth& health) {
  absl::MutexLock lock(&mu_);
  if (store_writable_now_ && !health.writable) store_write_stops_.Increment();
  store_writable_now_ = health.writable;
  store_writable_.Set(health.writable ? 1 : 0);
  PublishLocked();
}

void ServerHealth::ListenerChanged(bool accepting) { listeners_.Changed("grpc", accepting); }

void ServerHealth::Attach(grpc::HealthCheckServiceInterface* service) {
  listeners_.Attach(service);
  absl::MutexLock lock(&mu_);
  service_ = service;
  PublishLocked();
}

void ServerHealth::Detach() {
  listeners_.Detach();
  absl::MutexLock lock(&mu_);
  service_ = nullptr;
}

void ServerHealth::PublishLocked() {
  if (service_ == nullptr) return;
  service_->SetServingStatus(kStoreWritesHealthService, store_writable_now_);
}

}  // namespace kiln::orchestrator
