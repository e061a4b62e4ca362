// The control plane's own activities (task queue kiln-platform, run by kiln-worker):
//
//   kiln.platform.WakeMachine  WakeMachineInput -> WakeMachineResult: mints the agent's token
//                              for this wake and wakes the project's machine (idempotent)
//   kiln.platform.Deploy       DeployInput -> DeployResult: runs the image in the slot through
//                              the project's deploy target, health-checked, heartbeating (a
//                              cancel stops it and removes the new container)
//   kiln.platform.StopSlot     StopSlotInput -> (nothing): stops a preview or production slot
//
// Wake and deploy write what they do to the deployment's log stream "build", the one the
// agent's steps write to, so that a deployment's whole story is one followable stream.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sdk/activity_worker.h"
#include "sdk/connection.h"
#include "worker/deploy/deploy_target.h"
#include "worker/machines/machine_provider.h"

namespace kiln::worker {

namespace api = ::kiln::api::v1;

// Mints the token an agent of `project` presents (see common/auth); empty: no token.
using AgentTokenMinter = std::function<absl::StatusOr<std::string>(const std::string& project)>;

struct PlatformActivitiesOptions {
  // By provider name ("process"). Not owned.
  std::map<std::string, MachineProvider*> machines;
  // By target name ("none", "podman"). Not owned.
  std::map<std::string, DeployTarget*> targets;
  AgentTokenMinter mint_agent_token;
  // For the deployment logs. Not owned.
  sdk::Connection* connection = nullptr;
  std::string ns;
};

class PlatformActivities {
 public:
  explicit PlatformActivities(PlatformActivitiesOptions options) : options_(std::move(options)) {}
  absl::Status Register(sdk::ActivityWorker& worker);

 private:
  absl::StatusOr<api::Payloads> Wake(sdk::ActivityContext& ctx, const api::Payloads& input);
  absl::StatusOr<api::Payloads> Deploy(sdk::ActivityContext& ctx, const api::Payloads& input);
  absl::StatusOr<api::Payloads> StopSlot(sdk::ActivityContext& ctx, const api::Payloads& input);

  PlatformActivitiesOptions options_;
};

}  // namespace kiln::worker
