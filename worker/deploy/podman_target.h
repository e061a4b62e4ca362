// The `podman` deploy target: runs each slot's image on this host with podman
// (--network=host), behind the worker's PortProxy, as deploy_target.h describes.
//
// State lives in two places only: podman's storage under <state_dir>/podman (the builder
// agent's Podman library, run without PID-namespace isolation so `run -d` containers outlive
// the command), and the containers' labels (kiln.managed, kiln.project, kiln.slot,
// kiln.deployment, kiln.public-port, kiln.private-port, kiln.image, kiln.created). Create reads
// the labels back: every running kiln container gets its slot's public port again; of two in
// one slot the newest deployment stays and the other is removed; exited ones are removed.
//
// Invariants: a slot's public port forwards only to a container that passed its health check;
// a slot has at most one container once a deploy into it has returned; deploys into one slot
// run one at a time (other slots in parallel). Limits: kMaxSlots slots, kMaxDeployEnv variables.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "builder-agent/podman/podman.h"
#include "worker/deploy/deploy_target.h"
#include "worker/deploy/port_proxy.h"

namespace kiln::worker {

inline constexpr size_t kMaxSlots = 200;
inline constexpr size_t kMaxDeployEnv = 64;
inline constexpr size_t kMaxEnvValueBytes = 32 * 1024;
inline constexpr absl::Duration kMaxHealthTimeout = absl::Minutes(10);
// Log lines of a container that failed its health check passed to the log sink.
inline constexpr int kFailedLogLines = 30;

struct PodmanDeployOptions {
  std::string state_dir;            // Absolute; podman's storage goes to <state_dir>/podman.
  bool registry_tls_verify = true;  // false: plain HTTP registry (127.0.0.1 in tests).
  std::string podman_binary = "podman";
  absl::Duration pull_timeout = absl::Minutes(10);
  absl::Duration command_timeout = absl::Minutes(1);  // run, rm, ps, logs
  // SIGTERM → SIGKILL grace when a container is stopped (podman rm --time).
  int stop_timeout_seconds = 10;
  PortProxyOptions proxy;
};

class PodmanDeployTarget : public DeployTarget {
 public:
  // Prepares podman's storage (host profile detection: runtime, cgroup manager, ulimits),
  // removes exited kiln containers and restores the running ones' slots. Unavailable when
  // podman cannot run containers here. `log` gets what detection and restoring did.
  // `cancelled` (may be empty) is asked while each podman command runs: true stops it and
  // Create returns Cancelled (the worker stops while podman waits for its storage lock, which a
  // build may hold for minutes); the containers not yet restored are left for the next start.
  static absl::StatusOr<std::unique_ptr<PodmanDeployTarget>> Create(
      PodmanDeployOptions options, const DeployLogSink& log = {},
      const std::function<bool()>& cancelled = {});
  // Closes the public ports; containers keep running (a new target restores them).
  ~PodmanDeployTarget() override;

  absl::StatusOr<DeployResult> Deploy(const DeployRequest& request, const DeployLogSink& log,
                                      const std::function<bool()>& cancelled) override;
  absl::Status StopSlot(const std::string& project, const std::string& slot) override;
  absl::StatusOr<std::vector<SlotInfo>> List(const std::string& project) override;

  builder::Podman& podman() { return *podman_; }

 private:
  struct Slot {
    std::string project;
    std::string slot;
    std::string deployment_id;
    std::string image;
    std::string container;
    int public_port = 0;
    int private_port = 0;
  };
  // A label-filtered container as `podman ps` shows it.
  struct Managed {
    std::string name;
    std::string state;
    Slot slot;
    int64_t created_ns = 0;
  };

  PodmanDeployTarget(PodmanDeployOptions options, std::unique_ptr<builder::Podman> podman,
                     std::unique_ptr<PortProxy> proxy);
  absl::Status Restore(const DeployLogSink& log, const std::function<bool()>& cancelled);
  absl::StatusOr<std::vector<Managed>> ListManaged(const std::function<bool()>& cancelled = {});
  absl::Status RemoveContainer(const std::string& name, int stop_seconds,
                               const std::function<bool()>& cancelled = {});
  void TailLogs(const std::string& name, const DeployLogSink& log);
  absl::StatusOr<bool> Running(const std::string& name);
  absl::Mutex* SlotLock(const std::string& key);

  // Stops the containers slots no longer serve, one at a time, off the deploy's path: an app
  // gets its stop timeout to finish what it serves (and one that ignores SIGTERM, as PID 1
  // often does, takes all of it) while the deployment is already done.
  void Retire(const std::string& container, const DeployLogSink& log);
  void RetireLoop();

  const PodmanDeployOptions options_;
  std::unique_ptr<builder::Podman> podman_;
  std::unique_ptr<PortProxy> proxy_;

  absl::Mutex retire_mu_;
  std::deque<std::string> retiring_ ABSL_GUARDED_BY(retire_mu_);
  bool stopping_ ABSL_GUARDED_BY(retire_mu_) = false;
  std::thread retirer_;

  absl::Mutex mu_;
  std::map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);  // By "<project>/<slot>".
  std::map<std::string, std::unique_ptr<absl::Mutex>> slot_locks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::worker
