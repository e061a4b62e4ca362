#include "bench/engine/role_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "tests/testutil/process.h"

extern char** environ;

namespace kiln::bench {

absl::StatusOr<std::unique_ptr<RoleProcess>> RoleProcess::Start(
    const std::vector<std::string>& args, const std::vector<std::string>& env,
    const std::string& log_path, absl::Duration ready_timeout) {
  char self[PATH_MAX];
  ssize_t length = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (length <= 0) return absl::InternalError("cannot read /proc/self/exe");
  self[length] = '\0';

  // Everything the child needs is built before the fork: after it, in a process with threads,
  // only async-signal-safe calls are allowed.
  std::vector<std::string> argv_storage = {self};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = env;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int fds[2];
  // Close-on-exec, so that no other child (the orchestrator) keeps a copy of the write end and
  // the end-of-file comes when this child exits.
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    if (fds[1] == kReadyFd) {
      ::fcntl(kReadyFd, F_SETFD, 0);  // dup2 onto itself would leave close-on-exec set
    } else {
      ::dup2(fds[1], kReadyFd);
    }
    ::execve(self, argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  testutil::TrackChild(pid);
  std::unique_ptr<RoleProcess> child(new RoleProcess(pid, fds[0], log_path));
  if (!child->ReadUntil("ready\n", absl::Now() + ready_timeout)) {
    int code = child->KillAndReap();
    return absl::UnavailableError(absl::StrCat("role ", args.empty() ? "" : args.back(), " (pid ",
                                               pid, ") not ready, exit code ", code, "; its log:\n",
                                               child->LogTail()));
  }
  return child;
}

RoleProcess::~RoleProcess() {
  KillAndReap();
  ::close(ready_fd_);
}

bool RoleProcess::ReadUntil(const std::string& line, absl::Time deadline) {
  for (;;) {
    if (received_.find(line) != std::string::npos) return true;
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) return false;
    pollfd readable{.fd = ready_fd_, .events = POLLIN, .revents = 0};
    int ready = ::poll(&readable, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    char buffer[256];
    ssize_t n = ::read(ready_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed_ = true;  // the child exited (or is exiting: its files close before it is reapable)
      return false;
    }
    received_.append(buffer, static_cast<size_t>(n));
  }
}

absl::StatusOr<int> RoleProcess::Stop(absl::Duration timeout) {
  if (reaped_) return exit_code_;
  ::kill(pid_, SIGTERM);
  // Nothing more is ever written after "ready", so this returns at the end-of-file (the child
  // exited) or the deadline.
  ReadUntil("\x01never", absl::Now() + timeout);
  if (!closed_) {
    KillAndReap();
    return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " did not exit within ",
                                                    absl::FormatDuration(timeout),
                                                    " of SIGTERM; killed. Its log:\n", LogTail()));
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  testutil::UntrackChild(pid_);
  reaped_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

int RoleProcess::KillAndReap() {
  if (reaped_) return exit_code_;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  testutil::UntrackChild(pid_);
  reaped_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

std::string RoleProcess::LogTail() const {
  std::ifstream in(log_path_);
  std::stringstream content;
  content << in.rdbuf();
  std::string text = content.str();
  constexpr size_t kTail = 2000;
  return text.size() > kTail ? text.substr(text.size() - kTail) : text;
}

}  // namespace kiln::bench
