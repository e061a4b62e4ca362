#include "worker/deploy/none_target.h"

namespace kiln::worker {

absl::StatusOr<DeployResult> NoneDeployTarget::Deploy(const DeployRequest& request,
                                                      const DeployLogSink& log,
                                                      const std::function<bool()>& cancelled) {
  (void)request;
  (void)cancelled;  // Nothing to cancel: nothing runs.
  if (log) log("[deploy] target none: nothing to run");
  return DeployResult{};
}

absl::Status NoneDeployTarget::StopSlot(const std::string& project, const std::string& slot) {
  (void)project;
  (void)slot;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SlotInfo>> NoneDeployTarget::List(const std::string& project) {
  (void)project;
  return std::vector<SlotInfo>{};
}

}  // namespace kiln::worker
