// What differs between the kinds of local machines: how one is started, recognised and asked
// to stop. ProcessMachineProvider (process_provider.h) keeps everything else (one machine per
// project, the wake lock, the state and exit records, adoption after a worker restart, the
// pidfd monitor); a launcher says what the machine's process is:
//   - the process provider's own launcher: kiln-builder-agent itself;
//   - the microvm launcher (microvm_launcher.h): a QEMU process whose guest runs the agent.
// Internal to worker/machines. Implementations are thread-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/machines/agent_process.h"
#include "worker/machines/machine_provider.h"

namespace kiln::worker::internal {

struct LaunchContext {
  const WakeRequest& request;
  std::string dir;       // <machines_dir>/<project>
  std::string log_path;  // The machine's output: appended, never truncated.
};

class MachineLauncher {
 public:
  virtual ~MachineLauncher() = default;

  // What the machine's process is called in logs ("agent", "microVM").
  virtual std::string noun() const = 0;
  // The project's persistent volume under `dir` (a directory, or an image file).
  virtual std::string VolumePath(const std::string& dir) const = 0;
  // Creates the volume when it is missing.
  virtual absl::Status PrepareVolume(const std::string& dir) = 0;
  // The process to start for this wake.
  virtual absl::StatusOr<SpawnSpec> Command(const LaunchContext& context) = 0;
  // Runs once the process is started, before the wake returns (a microVM is handed its
  // configuration here). An error ends the process; kAborted asks the provider to start it
  // once more (a stale snapshot: the second Command boots cold).
  virtual absl::Status Started(const LaunchContext& context, int pidfd) {
    (void)context;
    (void)pidfd;
    return absl::OkStatus();
  }
  // Whether a live process with this command line is the machine of `project` in `dir`.
  virtual bool Matches(const std::vector<std::string>& argv, const std::string& project,
                       const std::string& dir) const = 0;
  // Asks the machine to stop: its agent hands a running activity back. SIGKILL follows after
  // the grace, from the provider.
  virtual absl::Status RequestStop(const std::string& dir, int pidfd);
  // The agent's exit code, given the machine process's (they differ for a microVM, whose
  // QEMU exits 0 when the guest powers off).
  virtual int AgentExitCode(const std::string& dir, int process_exit_code) {
    (void)dir;
    return process_exit_code;
  }
};

}  // namespace kiln::worker::internal
