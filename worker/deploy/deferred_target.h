// A deploy target made on a thread of its own, so that kiln-worker serves (its workflows, its
// webhooks, its console) while the target gets ready. The podman target's setup probes the
// host, waits for podman's storage lock and restores the running containers' slots; a podman
// busy building holds that for as long as the build holds the lock. A call that comes before
// the target is ready waits for it (a deploy checks `cancelled` while it waits); once the
// target could not be made, deploys fail with the reason and there is nothing to stop. Destroyed
// while the target is still being made (the worker stops), it asks the factory to give up.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/deploy/deploy_target.h"

namespace kiln::worker {

class DeferredDeployTarget : public DeployTarget {
 public:
  // `cancelled` turns true once this object is being destroyed: the factory should then stop
  // what it waits for (a podman command waiting for its storage lock) and return.
  using Factory = std::function<absl::StatusOr<std::unique_ptr<DeployTarget>>(
      const std::function<bool()>& cancelled)>;

  // Runs `make` on a thread of its own; `name` is the target's, for errors ("podman"). A deploy
  // waiting for it asks its `cancelled` every `check_every`.
  DeferredDeployTarget(std::string name, Factory make,
                       absl::Duration check_every = absl::Seconds(1));
  // Tells `make` to give up (its `cancelled`), then waits for it to return.
  ~DeferredDeployTarget() override;
  DeferredDeployTarget(const DeferredDeployTarget&) = delete;
  DeferredDeployTarget& operator=(const DeferredDeployTarget&) = delete;

  // kFailedPrecondition naming the reason when the target could not be made.
  absl::StatusOr<DeployResult> Deploy(const DeployRequest& request, const DeployLogSink& log,
                                      const std::function<bool()>& cancelled) override;
  // OK when the target could not be made: nothing of it runs here.
  absl::Status StopSlot(const std::string& project, const std::string& slot) override;
  absl::StatusOr<std::vector<SlotInfo>> List(const std::string& project) override;

  // The outcome of making the target once it is known, waiting at most `timeout` for it.
  std::optional<absl::Status> WaitReady(absl::Duration timeout);

 private:
  // The made target, or the reason there is none; waits until `make` returned or `cancelled`
  // says so (checked every check_every_).
  absl::StatusOr<DeployTarget*> Ready(const std::function<bool()>& cancelled);

  const std::string name_;
  const absl::Duration check_every_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<DeployTarget> target_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stopping_{false};
  std::thread maker_;
};

}  // namespace kiln::worker
