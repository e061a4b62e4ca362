// The operating-system side of the process provider: starting an agent process detached from
// the worker (own session, own mount namespace where the host allows it, stdin /dev/null, a
// given environment, every other descriptor closed), and reading what /proc says about a
// process (its start time, which with the pid names it uniquely, and its command line).
// Internal to worker/machines; Linux only (pidfds need Linux >= 5.3).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::worker::internal {

// The bounds of what SpawnDetached accepts (argv and environment entries, and their sizes).
inline constexpr size_t kMaxSpawnArgs = 256;
inline constexpr size_t kMaxSpawnEnv = 4096;
inline constexpr size_t kMaxSpawnBytes = 1 << 20;

struct SpawnSpec {
  std::string binary;                // Absolute path, exec'd as is (no PATH search).
  std::vector<std::string> argv;     // argv[0] included.
  std::vector<std::string> env;      // "NAME=value", the child's whole environment.
  int output_fd = -1;                // Becomes the child's stdout and stderr.
  bool new_mount_namespace = false;  // unshare(CLONE_NEWNS) and make / rprivate, if allowed.
};

struct Spawned {
  pid_t pid = 0;
  // A pidfd for the child (CLOEXEC), owned by the caller; -1 when exec failed.
  int pidfd = -1;
  // The errno of the failed execve (the child then exited 127 and has been reaped); 0 when
  // the binary runs.
  int exec_errno = 0;
  // The errno of a refused unshare/mount; 0 when the mount namespace was made (or not asked).
  int namespace_errno = 0;
  // The child's start time (clock ticks after boot, /proc/<pid>/stat field 22).
  uint64_t start_ticks = 0;
};

// Starts `spec` with clone(CLONE_VM | CLONE_VFORK): the parent resumes once the child has
// exec'd (or failed to), so an exec failure is reported here rather than discovered later.
// Returns once the child's command line shows in /proc (or it exited). Only async-signal-safe
// calls run in the child. kInvalidArgument past the limits above,
// kInternal when clone or pidfd_open fail.
absl::StatusOr<Spawned> SpawnDetached(const SpawnSpec& spec);

struct ProcStat {
  char state = '?';  // R, S, D, Z (zombie), X (dead), ...
  uint64_t start_ticks = 0;
};

// kNotFound when no process has this pid.
absl::StatusOr<ProcStat> ReadProcStat(pid_t pid);
// The process's argv (empty for a zombie). kNotFound when no process has this pid.
absl::StatusOr<std::vector<std::string>> ReadProcCmdline(pid_t pid);

// pidfd_open(2). kNotFound when no process has this pid.
absl::StatusOr<int> OpenPidfd(pid_t pid);

// Reaps the child behind `pidfd` if it has exited: its exit code (128+signal when killed), or
// -1 when it was not our child (or someone else reaped it). kUnavailable when it still runs.
absl::StatusOr<int> ReapPidfd(int pidfd);

// pidfd_send_signal(2): signals exactly the process behind `pidfd` (never a reused pid).
absl::Status SignalPidfd(int pidfd, int signo);

}  // namespace kiln::worker::internal
