// Deploy targets: where a pushed image runs. `none` builds only; `podman` runs the image on
// this host (--network=host). A project has slots: "production" (on the project's port) and one
// "preview-<branch>" per other branch (a port of its own). A deploy into a slot:
//   pull the image by digest → run it on a fresh private port (PORT in its environment) →
//   wait for its health endpoint → point the slot's public port at it → stop the container
//   the slot served before.
// The public port is held by the worker (a TCP proxy), so the switch drops no connection
// attempt and a container that fails its health check never receives traffic (the previous
// one keeps serving). A target recreated on the same state directory (a worker restart)
// finds its containers again by their labels and serves their slots as before.
// Thread-safe; deploys into one slot are serialised.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::worker {

inline constexpr char kProductionSlot[] = "production";

// "preview-<branch>" with the branch made safe for a container name ([a-z0-9-], at most 40
// characters, a hash suffix when it had to be shortened or changed).
std::string PreviewSlot(const std::string& branch);

struct DeployRequest {
  std::string project;
  std::string deployment_id;
  std::string slot;
  // What to run: <registry>/<repository>@sha256:…
  std::string image;
  // The slot's public port; 0: keep the slot's current one, or pick a free one for a new slot.
  int public_port = 0;
  // Path answered with 2xx once the app is ready, e.g. "/health".
  std::string health_path = "/";
  absl::Duration health_timeout = absl::Seconds(30);
  // Added to the container's environment (PORT is set by the target).
  std::vector<std::pair<std::string, std::string>> env;
};

struct DeployResult {
  std::string container;  // Name of the container now serving the slot.
  int public_port = 0;
  int private_port = 0;
  std::string url;                 // http://127.0.0.1:<public_port>/
  std::string previous_container;  // Stopped; empty when the slot was new.
  absl::Duration pull_duration;
  absl::Duration start_duration;
  absl::Duration health_duration;
};

struct SlotInfo {
  std::string project;
  std::string slot;
  std::string deployment_id;
  std::string image;
  std::string container;
  int public_port = 0;
  std::string url;
};

using DeployLogSink = std::function<void(std::string_view line)>;

class DeployTarget {
 public:
  virtual ~DeployTarget() = default;
  // kFailedPrecondition when the new container failed its health check (the slot still
  // serves what it served: nothing changed); kCancelled when `cancelled` said so (the new
  // container is removed); kUnavailable when the image could not be pulled or run.
  virtual absl::StatusOr<DeployResult> Deploy(const DeployRequest& request,
                                              const DeployLogSink& log,
                                              const std::function<bool()>& cancelled) = 0;
  // Stops the slot's container and closes its port. OK when the slot does not exist.
  virtual absl::Status StopSlot(const std::string& project, const std::string& slot) = 0;
  // The slots of `project` (empty: of every project).
  virtual absl::StatusOr<std::vector<SlotInfo>> List(const std::string& project) = 0;
};

}  // namespace kiln::worker
