// A child of the engine benchmark serving one of its hidden roles (a workflow worker or an
// activity worker in a process of its own): the benchmark binary itself, executed again with
// --role. The child says it serves by writing "ready\n" on a pipe (its fd kReadyFd), so the
// parent waits on that, never on a sleep. Stopped by PID: SIGTERM, then the pipe's end-of-file
// tells that the child exited; SIGKILL if it overstays. The destructor kills and reaps a child
// still running (every early return of the parent), and the kernel kills it should the
// parent die (PR_SET_PDEATHSIG, bound to the thread that started it: the main thread).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::bench {

class RoleProcess {
 public:
  // The descriptor the child writes "ready\n" on.
  static constexpr int kReadyFd = 3;

  // Runs this binary (/proc/self/exe) with `args` and `env` added to this environment, its
  // stdout and stderr appended to `log_path`, and waits up to `ready_timeout` for its "ready".
  // An error (with the log's tail) when it exits or stays silent; the child is then killed.
  static absl::StatusOr<std::unique_ptr<RoleProcess>> Start(const std::vector<std::string>& args,
                                                            const std::vector<std::string>& env,
                                                            const std::string& log_path,
                                                            absl::Duration ready_timeout);
  ~RoleProcess();
  RoleProcess(const RoleProcess&) = delete;
  RoleProcess& operator=(const RoleProcess&) = delete;

  pid_t pid() const { return pid_; }
  // SIGTERM, and waits up to `timeout` for the child to exit (then SIGKILL). Returns its exit
  // code (128 + signal when killed by one).
  absl::StatusOr<int> Stop(absl::Duration timeout);

 private:
  RoleProcess(pid_t pid, int ready_fd, std::string log_path)
      : pid_(pid), ready_fd_(ready_fd), log_path_(std::move(log_path)) {}
  // Reads the pipe until `line` came, it closed (false, closed_ set) or `deadline` passed
  // (false).
  bool ReadUntil(const std::string& line, absl::Time deadline);
  // Kills (SIGKILL) unless reaped, and reaps; returns the exit code.
  int KillAndReap();
  std::string LogTail() const;

  pid_t pid_;
  int ready_fd_;
  std::string log_path_;
  std::string received_;
  bool closed_ = false;
  bool reaped_ = false;
  int exit_code_ = -1;
};

}  // namespace kiln::bench
