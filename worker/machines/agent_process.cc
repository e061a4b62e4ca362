#include "worker/machines/agent_process.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

// glibc 2.36's <sys/pidfd.h> declares its functions without extern "C": raw syscalls instead.
namespace kiln::worker::internal {
namespace {

// The child runs on its own stack while sharing the parent's memory (CLONE_VM); it only
// resets signals, makes its session and namespace, sets up descriptors and execs.
constexpr size_t kChildStackBytes = 64 * 1024;
// /proc/<pid>/stat and cmdline are read whole; these bound them.
constexpr size_t kMaxProcFileBytes = 64 * 1024;
// How long SpawnDetached waits for the new image's command line to show in /proc.
constexpr absl::Duration kExecSettleTimeout = absl::Seconds(2);
constexpr absl::Duration kExecSettlePoll = absl::Microseconds(200);

// Everything the child needs, prepared by the parent (the child allocates nothing).
struct ChildArgs {
  const char* binary;
  char* const* argv;
  char* const* envp;
  int output_fd;
  int stdin_fd;
  bool new_mount_namespace;
  // Written by the child, read by the parent once clone returns (CLONE_VFORK orders them).
  int exec_errno;
  int namespace_errno;
};

int ChildMain(void* raw) {
  auto* args = static_cast<ChildArgs*>(raw);
  // The parent blocked every signal around clone; reset what the worker installed (handlers,
  // an ignored SIGPIPE) before unblocking, so the agent starts with default dispositions.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int signo = 1; signo < NSIG; ++signo) {
    if (signo == SIGKILL || signo == SIGSTOP) continue;
    (void)::sigaction(signo, &dfl, nullptr);  // Internal glibc signals refuse: fine.
  }
  // Its own session: a worker killed (even with SIGKILL) or its terminal hanging up does not
  // take the agent down.
  (void)::setsid();
  if (args->new_mount_namespace) {
    if (::unshare(CLONE_NEWNS) != 0) {
      args->namespace_errno = errno;
    } else if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      // Without rprivate, mounts the agent's podman makes would propagate to the host.
      args->namespace_errno = errno;
    }
  }
  if (::dup2(args->stdin_fd, 0) < 0 || ::dup2(args->output_fd, 1) < 0 ||
      ::dup2(args->output_fd, 2) < 0) {
    args->exec_errno = errno;
    ::_exit(127);
  }
  // Nothing else of the worker's leaks into the agent (its listeners, its wake lock files).
  (void)::close_range(3, ~0U, 0);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(args->binary, args->argv, args->envp);
  args->exec_errno = errno;
  ::_exit(127);
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

absl::StatusOr<std::string> ReadProcFile(pid_t pid, const char* name) {
  std::string path = absl::StrCat("/proc/", pid, "/", name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ESRCH) return absl::NotFoundError(absl::StrCat("no pid ", pid));
    return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  std::string content;
  char buffer[4096];
  while (content.size() < kMaxProcFileBytes) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      if (err == ESRCH) return absl::NotFoundError(absl::StrCat("no pid ", pid));
      return absl::InternalError(absl::StrCat("read ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return content;
}

}  // namespace

absl::StatusOr<Spawned> SpawnDetached(const SpawnSpec& spec) {
  size_t bytes = spec.binary.size();
  for (const std::string& s : spec.argv) bytes += s.size() + 1;
  for (const std::string& s : spec.env) bytes += s.size() + 1;
  if (spec.argv.empty() || spec.argv.size() > kMaxSpawnArgs || spec.env.size() > kMaxSpawnEnv ||
      bytes > kMaxSpawnBytes) {
    return absl::InvalidArgumentError("spawn: argv or environment out of bounds");
  }
  if (spec.output_fd < 0) return absl::InvalidArgumentError("spawn: no output descriptor");
  std::vector<std::string> argv_storage = spec.argv;
  std::vector<std::string> env_storage = spec.env;
  std::vector<char*> argv = Pointers(argv_storage);
  std::vector<char*> envp = Pointers(env_storage);

  // Descriptors the child dup2s onto 0..2 must not themselves be 0..2.
  int stdin_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (stdin_fd < 0) return absl::InternalError(absl::StrCat("open /dev/null: ", strerror(errno)));
  int output_fd = ::fcntl(spec.output_fd, F_DUPFD_CLOEXEC, 3);
  if (output_fd < 0) {
    ::close(stdin_fd);
    return absl::InternalError(absl::StrCat("dup: ", strerror(errno)));
  }
  if (stdin_fd < 3) {
    int moved = ::fcntl(stdin_fd, F_DUPFD_CLOEXEC, 3);
    ::close(stdin_fd);
    stdin_fd = moved;
  }

  ChildArgs args{spec.binary.c_str(),
                 argv.data(),
                 envp.data(),
                 output_fd,
                 stdin_fd,
                 spec.new_mount_namespace,
                 0,
                 0};
  auto stack = std::make_unique<char[]>(kChildStackBytes);
  // No signal handler of the worker may run on the child's stack while it shares memory.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid =
      ::clone(ChildMain, stack.get() + kChildStackBytes, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(stdin_fd);
  ::close(output_fd);
  if (pid < 0) return absl::InternalError(absl::StrCat("clone: ", strerror(clone_errno)));

  Spawned spawned;
  spawned.pid = pid;
  spawned.namespace_errno = args.namespace_errno;
  if (args.exec_errno != 0) {
    spawned.exec_errno = args.exec_errno;
    int wstatus = 0;
    // Our own child, by pid (never waitpid(-1): the worker has other children).
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    return spawned;
  }
  // The child cannot be reaped by anyone but us before this: its pid is not reused yet.
  absl::StatusOr<int> pidfd = OpenPidfd(pid);
  if (!pidfd.ok()) {
    return absl::InternalError(absl::StrCat("pidfd_open(", pid, "): ", pidfd.status().message()));
  }
  spawned.pidfd = *pidfd;
  absl::StatusOr<ProcStat> stat = ReadProcStat(pid);
  if (stat.ok()) spawned.start_ticks = stat->start_ticks;
  // CLONE_VFORK lets the parent go once the new image replaced the old one, but before the
  // kernel has published its arguments: /proc/<pid>/cmdline is empty for a moment. Whoever
  // checks the agent by its command line (this worker or another, after reading the state
  // file) must see it, so wait for it, briefly and boundedly.
  const absl::Time deadline = absl::Now() + kExecSettleTimeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<ProcStat> now = ReadProcStat(pid);
    if (!now.ok() || now->state == 'Z' || now->state == 'X') break;  // Exited already.
    absl::StatusOr<std::vector<std::string>> argv = ReadProcCmdline(pid);
    if (!argv.ok() || !argv->empty()) break;
    absl::SleepFor(kExecSettlePoll);
  }
  return spawned;
}

absl::StatusOr<ProcStat> ReadProcStat(pid_t pid) {
  absl::StatusOr<std::string> content = ReadProcFile(pid, "stat");
  if (!content.ok()) return content.status();
  // "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses, so the
  // fields are counted from the last ')'.
  size_t close = content->rfind(')');
  if (close == std::string::npos) return absl::InternalError("malformed /proc/<pid>/stat");
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*content).substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); starttime is field 22.
  constexpr size_t kStartTimeIndex = 22 - 3;
  ProcStat stat;
  if (fields.size() <= kStartTimeIndex || fields[0].empty() ||
      !absl::SimpleAtoi(fields[kStartTimeIndex], &stat.start_ticks)) {
    return absl::InternalError("malformed /proc/<pid>/stat");
  }
  stat.state = fields[0][0];
  return stat;
}

absl::StatusOr<std::vector<std::string>> ReadProcCmdline(pid_t pid) {
  absl::StatusOr<std::string> content = ReadProcFile(pid, "cmdline");
  if (!content.ok()) return content.status();
  std::vector<std::string> argv;
  if (content->empty()) return argv;
  if (content->back() == '\0') content->pop_back();
  for (absl::string_view arg : absl::StrSplit(*content, '\0')) argv.emplace_back(arg);
  return argv;
}

absl::StatusOr<int> OpenPidfd(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    if (errno == ESRCH) return absl::NotFoundError(absl::StrCat("no pid ", pid));
    return absl::InternalError(absl::StrCat("pidfd_open: ", strerror(errno)));
  }
  return fd;
}

absl::StatusOr<int> ReapPidfd(int pidfd) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  int rc;
  do {
    rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                  WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == ECHILD) return -1;  // Adopted (not our child), or reaped elsewhere.
    return absl::InternalError(absl::StrCat("waitid: ", strerror(errno)));
  }
  if (info.si_pid == 0) return absl::UnavailableError("still running");
  if (info.si_code == CLD_EXITED) return info.si_status;
  return 128 + info.si_status;
}

absl::Status SignalPidfd(int pidfd, int signo) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0) != 0) {
    if (errno == ESRCH) return absl::NotFoundError("the process has exited");
    return absl::InternalError(absl::StrCat("pidfd_send_signal: ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace kiln::worker::internal
