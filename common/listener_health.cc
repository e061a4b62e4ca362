#include "common/listener_health.h"

namespace kiln {

ListenerHealth::ListenerHealth(prometheus::Registry& registry)
    : gauges_(prometheus::BuildGauge()
                  .Name("kiln_listener_accepting")
                  .Help("1 while the listener accepts new connections (its self-probe connects), "
                        "0 while it cannot")
                  .Register(registry)) {}

void ListenerHealth::Changed(const std::string& name, bool accepting) {
  absl::MutexLock lock(&mu_);
  accepting_[name] = accepting;
  gauges_.Add({{"listener", name}}).Set(accepting ? 1 : 0);
  PublishLocked();
}

bool ListenerHealth::accepting() const {
  absl::MutexLock lock(&mu_);
  return AllAcceptingLocked();
}

void ListenerHealth::Attach(grpc::HealthCheckServiceInterface* service) {
  absl::MutexLock lock(&mu_);
  service_ = service;
  PublishLocked();
}

void ListenerHealth::Detach() {
  absl::MutexLock lock(&mu_);
  service_ = nullptr;
}

void ListenerHealth::PublishLocked() {
  // Named "": SetServingStatus(bool) would set every service, the orchestrator's
  // "kiln.store.writes" included.
  if (service_ != nullptr) service_->SetServingStatus("", AllAcceptingLocked());
}

bool ListenerHealth::AllAcceptingLocked() const {
  for (const auto& [name, accepting] : accepting_) {
    if (!accepting) return false;
  }
  return true;
}

}  // namespace kiln
