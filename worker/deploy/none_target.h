// The `none` deploy target: a project that only builds. Nothing runs, no port is held; a deploy
// returns an empty result at once, so a DeploymentWorkflow needs no special case for it.
#pragma once

#include <string>
#include <vector>

#include "worker/deploy/deploy_target.h"

namespace kiln::worker {

class NoneDeployTarget : public DeployTarget {
 public:
  absl::StatusOr<DeployResult> Deploy(const DeployRequest& request, const DeployLogSink& log,
                                      const std::function<bool()>& cancelled) override;
  absl::Status StopSlot(const std::string& project, const std::string& slot) override;
  absl::StatusOr<std::vector<SlotInfo>> List(const std::string& project) override;
};

}  // namespace kiln::worker
