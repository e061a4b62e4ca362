// The `process` machine provider, the embedded default: a project's builder machine is a
// kiln-builder-agent process on this host, with `<machines_dir>/<project>/volume` as its
// persistent volume. docs/machines.md describes the layout and what it isolates (not much:
// the microVM provider is the isolation boundary for production).
//
// Per project, under `<machines_dir>/<project>/`:
//   volume/      the agent's volume (git mirror, container storage, caches)
//   agent.log    the agent's stdout+stderr, appended; moved to agent.log.1 past kMaxAgentLogBytes
//                at a wake
//   state        the running agent: pid, start time (from /proc, so a reused pid is not taken
//                for it), wake time, size; written atomically at each start
//   exit         the last agent's pid, start time and exit code, written when it is seen to exit
//   wake.lock    flock'd by Wake/Stop/Destroy, so two worker processes never start two agents
//
// Invariants: at most one agent per project (a mutex per project inside this process, the
// flock across processes, and the agent's own lock on its volume behind both); an agent is
// "awake" only while its pid lives with the recorded start time and its /proc cmdline names
// this project and volume. Agents run in their own session and outlive the provider (and the
// worker): destroying the provider leaves them running, and a provider created on the same
// directory adopts them. Exits are followed through one pidfd per agent, all watched by one
// monitor thread; own children are reaped by pidfd (waitid(P_PIDFD)), never waitpid(-1).
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/machines/machine_provider.h"

namespace kiln::worker {

namespace internal {
class MachineLauncher;
}  // namespace internal

// Limits (named so they can be found and checked).
inline constexpr int kMaxMachinesLimit = 1024;
inline constexpr int64_t kMaxAgentLogBytes = 8 << 20;
inline constexpr size_t kMaxExtraAgentArgs = 64;
inline constexpr size_t kMaxAgentEnv = 64;
// How long a Wake/Stop waits for another worker process holding the project's wake lock.
inline constexpr absl::Duration kWakeLockTimeout = absl::Seconds(30);
// After SIGKILL, how long Stop waits for the process to be gone.
inline constexpr absl::Duration kKillWait = absl::Seconds(10);
// The grace Destroy gives a running agent before SIGKILL.
inline constexpr absl::Duration kDestroyStopGrace = absl::Seconds(10);

struct ProcessProviderOptions {
  std::string machines_dir;  // Created if missing.
  std::string agent_binary;  // kiln-builder-agent, an absolute path.
  std::string orchestrator;  // host:port the agent polls.
  std::string registry;      // host[:port] images are pushed to (empty: the agent's default).
  bool registry_tls_verify = true;
  absl::Duration idle_grace = absl::Seconds(30);  // The agent's --idle-grace.
  std::vector<std::string> extra_agent_args;      // Appended to the agent's flags.
  int max_machines = 8;                           // Awake at once; beyond: kResourceExhausted.
  // Added to the agent's environment ("NAME=value"), e.g. KILN_SECRET_<NAME>. The worker's
  // own KILN_* variables are not inherited, except KILN_LOG_FORMAT and KILN_LOG_LEVEL.
  std::vector<std::string> agent_env;
  // Start agents in a mount namespace of their own where the host allows it.
  bool mount_namespace = true;
  // What a machine's process is (launcher.h). Empty: kiln-builder-agent itself, from the
  // options above. The microvm provider (microvm_provider.h) sets its QEMU launcher here.
  std::shared_ptr<internal::MachineLauncher> launcher;
};

class ProcessMachineProvider : public MachineProvider {
 public:
  // Creates machines_dir, adopts the agents recorded there that still run (and match), and
  // starts the monitor thread. kInvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<ProcessMachineProvider>> Create(
      ProcessProviderOptions options);
  // Stops following the agents; does not stop them (see the header comment).
  ~ProcessMachineProvider() override;

  // kResourceExhausted when max_machines are awake; kUnavailable when the agent could not be
  // started (its exec failed: agent.log says why and Status shows exit code 127).
  absl::StatusOr<WakeResult> Wake(const WakeRequest& request) override;
  absl::StatusOr<MachineStatus> Status(const std::string& project) override;
  absl::StatusOr<std::vector<MachineStatus>> List() override;
  // kDeadlineExceeded when the agent outlives SIGKILL by kKillWait.
  absl::Status Stop(const std::string& project, absl::Duration grace) override;
  absl::Status Destroy(const std::string& project) override;

  const ProcessProviderOptions& options() const { return options_; }

 protected:
  explicit ProcessMachineProvider(ProcessProviderOptions options);
  absl::Status Init();

 private:
  struct Machine;
  class WakeLock;

  std::string Dir(const std::string& project) const;
  std::shared_ptr<Machine> GetMachine(const std::string& project) ABSL_LOCKS_EXCLUDED(mu_);
  // Adopts the agent recorded in the project's state file when it still runs and matches.
  // Returns true when the machine is awake afterwards.
  bool AdoptRecorded(const std::string& project, Machine& machine) ABSL_LOCKS_EXCLUDED(mu_);
  bool Matches(pid_t pid, uint64_t start_ticks, const std::string& project) const;
  absl::StatusOr<WakeResult> Start(const WakeRequest& request, Machine& machine, absl::Time began)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<WakeResult> StartOnce(const WakeRequest& request, Machine& machine,
                                       absl::Time began) ABSL_LOCKS_EXCLUDED(mu_);
  MachineStatus StatusOf(const std::string& project, const Machine& machine) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StopLocked(const std::string& project, Machine& machine, absl::Duration grace)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Follow(Machine& machine, int pidfd, pid_t pid, uint64_t start_ticks, absl::Time woke_at,
              bool child) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Monitor();
  void OnExit(const std::string& project, Machine& machine) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Notify();

  const ProcessProviderOptions options_;
  std::shared_ptr<internal::MachineLauncher> launcher_;
  int event_fd_ = -1;  // Wakes the monitor: a pidfd was added, or the provider is going.
  std::thread monitor_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Machine>> machines_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Wakes past the capacity check that have not started their agent yet.
  int starting_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::worker
