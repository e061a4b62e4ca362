// Builder machines: each project's builds run in a machine of its own that sleeps between
// builds and is woken on demand. A provider owns the machines of one kind (`process`, the
// embedded default: kiln-builder-agent as a child process of the worker; `microvm` later) and
// keeps these invariants:
//   - exactly one machine per project at a time; Wake of an awake machine does nothing;
//   - a machine whose agent exited is asleep (the agent exits once its queue drains);
//   - the provider survives a worker restart: a new provider on the same machines directory
//     finds the machines still awake (and follows them) or knows they are gone.
// Wake returns once the agent is started, not once it polls: the activity's schedule-to-start
// timeout catches an agent that never came up (the workflow then wakes again).
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::worker {

// Project ids: [a-z0-9][a-z0-9-]{0,62} (they name directories, queues, containers and ports).
absl::Status ValidateProjectId(const std::string& project);

struct WakeRequest {
  std::string project;
  // "small", "medium", "large": the machine's size; the process provider records it only.
  std::string size = "small";
  // Minted for this wake (see common/auth): the agent's only credential. Passed to the agent
  // through its environment (KILN_TOKEN), never on a command line.
  std::string token;
};

struct WakeResult {
  // The machine was awake already: nothing was started.
  bool already_awake = false;
  pid_t pid = 0;
  absl::Duration took;
};

enum class MachineState { kAsleep, kAwake };

struct MachineStatus {
  std::string project;
  MachineState state = MachineState::kAsleep;
  pid_t pid = 0;            // While awake.
  absl::Time woke_at;       // The last wake (InfinitePast when never woken).
  int last_exit_code = -1;  // The last agent's exit code, when known (-1: not known).
  std::string log_path;     // The agent's output.
  std::string volume;       // The machine's persistent volume.
};

class MachineProvider {
 public:
  virtual ~MachineProvider() = default;
  // kInvalidArgument for a bad project id; kUnavailable when the machine could not start.
  virtual absl::StatusOr<WakeResult> Wake(const WakeRequest& request) = 0;
  virtual absl::StatusOr<MachineStatus> Status(const std::string& project) = 0;
  // Every machine this provider knows (awake or asleep).
  virtual absl::StatusOr<std::vector<MachineStatus>> List() = 0;
  // Puts the machine to sleep now: SIGTERM (the agent hands a running activity back as a
  // retryable failure), SIGKILL after `grace`. OK when it was asleep.
  virtual absl::Status Stop(const std::string& project, absl::Duration grace) = 0;
  // Removes the machine's volume (the project is deleted). Stops it first.
  virtual absl::Status Destroy(const std::string& project) = 0;
};

}  // namespace kiln::worker
