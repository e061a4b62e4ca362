#include "worker/deploy/deferred_target.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace kiln::worker {

DeferredDeployTarget::DeferredDeployTarget(std::string name, Factory make,
                                           absl::Duration check_every)
    : name_(std::move(name)), check_every_(check_every) {
  maker_ = std::thread([this, make = std::move(make)] {
    absl::StatusOr<std::unique_ptr<DeployTarget>> made =
        make([this] { return stopping_.load(std::memory_order_relaxed); });
    absl::MutexLock lock(&mu_);
    done_ = true;
    if (!made.ok()) {
      status_ = made.status();
    } else if (*made == nullptr) {
      status_ = absl::InternalError("the target's factory returned no target");
    } else {
      target_ = *std::move(made);
    }
  });
}

DeferredDeployTarget::~DeferredDeployTarget() {
  stopping_.store(true, std::memory_order_relaxed);
  maker_.join();
}

std::optional<absl::Status> DeferredDeployTarget::WaitReady(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(&done_), timeout)) return std::nullopt;
  return status_;
}

absl::StatusOr<DeployTarget*> DeferredDeployTarget::Ready(const std::function<bool()>& cancelled) {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&done_), check_every_)) {
    if (cancelled && cancelled()) {
      return absl::CancelledError(
          absl::StrCat("cancelled while the ", name_, " deploy target was getting ready"));
    }
  }
  if (!status_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the ", name_, " deploy target is unavailable here: ", status_.message()));
  }
  return target_.get();
}

absl::StatusOr<DeployResult> DeferredDeployTarget::Deploy(const DeployRequest& request,
                                                          const DeployLogSink& log,
                                                          const std::function<bool()>& cancelled) {
  {
    absl::MutexLock lock(&mu_);
    if (!done_ && log) log(absl::StrCat("[deploy] waiting for the ", name_, " target to be ready"));
  }
  absl::StatusOr<DeployTarget*> target = Ready(cancelled);
  if (!target.ok()) return target.status();
  return (*target)->Deploy(request, log, cancelled);
}

absl::Status DeferredDeployTarget::StopSlot(const std::string& project, const std::string& slot) {
  absl::StatusOr<DeployTarget*> target = Ready({});
  if (!target.ok()) return absl::OkStatus();  // Never made: nothing of it runs here.
  return (*target)->StopSlot(project, slot);
}

absl::StatusOr<std::vector<SlotInfo>> DeferredDeployTarget::List(const std::string& project) {
  ASSIGN_OR_RETURN(DeployTarget * target, Ready({}));
  return target->List(project);
}

}  // namespace kiln::worker
