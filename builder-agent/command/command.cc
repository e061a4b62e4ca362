#include "builder-agent/command/command.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace kiln::builder {
namespace {

// A write to the step's stdin, whose reader may be gone, without SIGPIPE: the agent ignores the
// signal, but a process that does not (a test) would die of it. Blocked in this thread for the
// write (a pipe's SIGPIPE goes to the writing thread) and taken if the write raised it.
ssize_t WriteWithoutSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_only, before;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &before);
  const ssize_t put = ::write(fd, data, size);
  const int saved = errno;
  if (put < 0 && saved == EPIPE) {
    const timespec none = {0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &none) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  errno = saved;
  return put;
}

// ---- Redaction and line splitting ----

std::vector<std::string> ExpandSecrets(const std::vector<std::string>& secrets) {
  std::vector<std::string> out;
  for (const std::string& s : secrets) {
    if (s.empty()) continue;
    out.push_back(s);
    if (s.find('\n') != std::string::npos) {
      for (absl::string_view part : absl::StrSplit(s, '\n', absl::SkipWhitespace())) {
        // Very short lines would blank out ordinary words; a multi-line secret (a key) has
        // long ones.
        if (part.size() >= 4) out.emplace_back(part.data(), part.size());
      }
    }
  }
  // Longest first, so a secret containing another is replaced whole.
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Redacts `text` and keeps only what starts before byte `limit` of the original. A secret that
// starts before `limit` is replaced whole even when it ends after it, so a cut never leaves a
// piece of a secret behind.
std::string RedactPrefix(std::string_view text, const std::vector<std::string>& expanded,
                         size_t limit) {
  std::string out;
  out.reserve(std::min(text.size(), limit) + 16);
  size_t i = 0;
  while (i < text.size() && i < limit) {
    bool matched = false;
    for (const std::string& s : expanded) {
      if (text[i] == s[0] && text.size() - i >= s.size() &&
          std::memcmp(text.data() + i, s.data(), s.size()) == 0) {
        out.append(kRedacted);
        i += s.size();
        matched = true;
        break;
      }
    }
    if (!matched) out.push_back(text[i++]);
  }
  return out;
}

// Splits a byte stream into lines, redacts them and caps their length.
class LineSplitter {
 public:
  LineSplitter(const std::vector<std::string>& expanded_secrets,
               std::function<void(std::string)> emit)
      : secrets_(expanded_secrets), emit_(std::move(emit)) {
    for (const std::string& s : secrets_) max_secret_ = std::max(max_secret_, s.size());
  }

  void Feed(std::string_view data) {
    while (!data.empty()) {
      size_t nl = data.find('\n');
      std::string_view piece = data.substr(0, nl);
      if (!discarding_) pending_.append(piece.data(), piece.size());
      if (nl == std::string_view::npos) {
        // Keep enough past the cap that a secret crossing it is still seen whole.
        if (!discarding_ && pending_.size() >= kMaxLineBytes + max_secret_) {
          EmitPending(/*cut=*/true);
          discarding_ = true;
        }
        return;
      }
      if (!discarding_) EmitPending(/*cut=*/false);
      discarding_ = false;
      data.remove_prefix(nl + 1);
    }
  }

  void Finish() {
    if (!pending_.empty() && !discarding_) EmitPending(/*cut=*/false);
    pending_.clear();
  }

 private:
  // `cut`: the line goes on past what was kept, and the rest of it will be dropped.
  void EmitPending(bool cut) {
    std::string_view line = pending_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string out = RedactPrefix(line, secrets_, kMaxLineBytes);
    if (cut || line.size() > kMaxLineBytes) out.append(kTruncatedMarker);
    emit_(std::move(out));
    pending_.clear();
  }

  const std::vector<std::string>& secrets_;
  std::function<void(std::string)> emit_;
  size_t max_secret_ = 0;
  std::string pending_;
  bool discarding_ = false;
};

// ---- Process plumbing ----

struct FdCloser {
  int fd = -1;
  ~FdCloser() { Reset(); }
  void Reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Async-signal-safe helpers for the code between fork and exec.
void WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void WriteChildError(int fd, const char* what, int err) {
  char buf[160];
  size_t len = 0;
  const char* prefix = "kiln: ";
  for (const char* p = prefix; *p && len < sizeof(buf) - 16; ++p) buf[len++] = *p;
  for (const char* p = what; *p && len < sizeof(buf) - 16; ++p) buf[len++] = *p;
  const char* mid = ": errno ";
  for (const char* p = mid; *p && len < sizeof(buf) - 16; ++p) buf[len++] = *p;
  char digits[12];
  int n = 0;
  unsigned value = static_cast<unsigned>(err);
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < 11);
  while (n > 0) buf[len++] = digits[--n];
  buf[len++] = '\n';
  WriteAll(fd, buf, len);
}

void CloseFrom(unsigned first) { ::syscall(SYS_close_range, first, ~0U, 0); }

// The shim's messages on the report pipe: {main pid, errno} once started, then
// {wait status of the step, 1 when its process group is gone}.
struct ShimMessage {
  int32_t a;
  int32_t b;
};

struct Prepared {
  std::string path;
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

std::string LookupPath(const std::string& name, const std::string& path_var) {
  if (name.find('/') != std::string::npos) return name;
  for (absl::string_view dir : absl::StrSplit(path_var, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// The step's process group, in the shim's copy of this variable (0 until the step is forked).
volatile sig_atomic_t g_shim_step_pgid = 0;

// The shim's SIGTERM handler, also its parent-death signal: when the agent dies (or is told to
// stop), the step's whole group goes with the shim.
void ShimTerminate(int) {
  if (g_shim_step_pgid > 0) ::kill(-g_shim_step_pgid, SIGKILL);
  ::_exit(1);
}

// Runs in the forked shim; never returns.
[[noreturn]] void RunShim(const CommandSpec& spec, const Prepared& prep, int stdin_fd, int out_w,
                          int report_w, pid_t agent_pid) {
  struct sigaction on_term;
  std::memset(&on_term, 0, sizeof(on_term));
  on_term.sa_handler = ShimTerminate;
  ::sigaction(SIGTERM, &on_term, nullptr);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::sigprocmask(SIG_UNBLOCK, &term, nullptr);  // The agent may block it in every thread.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != agent_pid) ::_exit(1);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  if (spec.isolate && ::unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) {
    ShimMessage msg{-1, errno};
    WriteAll(report_w, &msg, sizeof(msg));
    ::_exit(1);
  }
  const pid_t shim_pid = ::getpid();
  pid_t main_pid = ::fork();
  if (main_pid == 0) {
    ::setpgid(0, 0);
    // If the agent dies, the shim dies with it (above), and the step with the shim: a crashed
    // agent leaves no build running on the machine.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // (As PID 1 of its own namespace the step sees no parent: getppid() is 0.)
    if (::getppid() != (spec.isolate ? 0 : shim_pid)) ::_exit(1);
    if (spec.isolate) {
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        WriteChildError(out_w, "making mounts private", errno);
        ::_exit(126);
      }
      if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        WriteChildError(out_w, "mounting /proc", errno);
        ::_exit(126);
      }
      for (const BindMount& m : spec.bind_mounts) {
        ::mkdir(m.target.c_str(), 0700);
        if (::mount(m.source.c_str(), m.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
          WriteChildError(out_w, "bind mount", errno);
          ::_exit(126);
        }
      }
    }
    ::dup2(stdin_fd, 0);
    ::dup2(out_w, 1);
    ::dup2(out_w, 2);
    CloseFrom(3);
    if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) {
      WriteChildError(1, "cannot enter the working directory", errno);
      ::_exit(126);
    }
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(prep.path.c_str(), prep.argv.data(), prep.envp.data());
    WriteChildError(1, "cannot execute the command", errno);
    ::_exit(127);
  }
  if (main_pid < 0) {
    ShimMessage msg{-1, errno};
    WriteAll(report_w, &msg, sizeof(msg));
    ::_exit(1);
  }
  ::setpgid(main_pid, main_pid);
  g_shim_step_pgid = main_pid;
  // The shim needs nothing of the agent's: holding its sockets or the output pipe open would
  // keep them alive for the step's whole life.
  if (report_w > 0) ::syscall(SYS_close_range, 0U, static_cast<unsigned>(report_w - 1), 0);
  CloseFrom(static_cast<unsigned>(report_w) + 1);
  ShimMessage started{main_pid, 0};
  WriteAll(report_w, &started, sizeof(started));

  int main_status = 0;
  for (;;) {  // Reap everything until the step itself exits.
    int status = 0;
    pid_t r = ::waitpid(-1, &status, 0);
    if (r == main_pid) {
      main_status = status;
      break;
    }
    if (r < 0 && errno != EINTR) break;
  }
  // Whatever the step left running in its group ends with it.
  ::kill(-main_pid, SIGKILL);
  int32_t gone = 0;
  for (int i = 0; i < 1000; ++i) {  // At most ~2 s.
    int status = 0;
    while (::waitpid(-1, &status, WNOHANG) > 0) {
    }
    if (::kill(-main_pid, 0) != 0 && errno == ESRCH) {
      gone = 1;
      break;
    }
    struct timespec ts {
      0, 2 * 1000 * 1000
    };
    ::nanosleep(&ts, nullptr);
  }
  ShimMessage done{main_status, gone};
  WriteAll(report_w, &done, sizeof(done));
  ::_exit(0);
}

absl::Status Validate(const CommandSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return absl::InvalidArgumentError("empty command");
  }
  if (spec.argv.size() > kMaxArgs) return absl::InvalidArgumentError("too many arguments");
  size_t bytes = 0;
  for (const auto& a : spec.argv) bytes += a.size() + 1;
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos) {
      return absl::InvalidArgumentError("bad environment variable name");
    }
    bytes += k.size() + v.size() + 2;
  }
  if (bytes > kMaxArgvEnvBytes) return absl::InvalidArgumentError("arguments too large");
  if (spec.stdin_data.size() > kMaxStdinBytes) {
    return absl::InvalidArgumentError("stdin data too large");
  }
  if (spec.secrets.size() > kMaxSecrets) return absl::InvalidArgumentError("too many secrets");
  for (const auto& s : spec.secrets) {
    if (s.size() > kMaxSecretBytes) return absl::InvalidArgumentError("secret too long");
  }
  if (spec.timeout <= absl::ZeroDuration() || spec.timeout > kMaxTimeout) {
    return absl::InvalidArgumentError("timeout out of range");
  }
  if (spec.kill_grace < absl::ZeroDuration() || spec.kill_grace > kMaxKillGrace) {
    return absl::InvalidArgumentError("kill grace out of range");
  }
  if (spec.bind_mounts.size() > kMaxBindMounts) {
    return absl::InvalidArgumentError("too many bind mounts");
  }
  if (!spec.bind_mounts.empty() && !spec.isolate) {
    return absl::InvalidArgumentError("bind mounts need isolate");
  }
  return absl::OkStatus();
}

absl::StatusOr<Prepared> Prepare(const CommandSpec& spec) {
  Prepared prep;
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  for (const auto& [k, v] : env) prep.env_storage.push_back(absl::StrCat(k, "=", v));
  prep.path = LookupPath(spec.argv[0], env.count("PATH") ? env["PATH"] : "/usr/bin:/bin");
  if (prep.path.empty()) {
    return absl::NotFoundError(absl::StrCat("command not found: ", spec.argv[0]));
  }
  prep.argv_storage = spec.argv;
  for (auto& a : prep.argv_storage) prep.argv.push_back(a.data());
  prep.argv.push_back(nullptr);
  for (auto& e : prep.env_storage) prep.envp.push_back(e.data());
  prep.envp.push_back(nullptr);
  return prep;
}

absl::Status RedactStatus(const absl::Status& status, const std::vector<std::string>& secrets) {
  if (status.ok()) return status;
  absl::string_view message = status.message();
  return absl::Status(status.code(),
                      Redact(std::string_view(message.data(), message.size()), secrets));
}

absl::StatusOr<CommandResult> RunCommandImpl(const CommandSpec& spec, const LineSink& sink,
                                             const std::function<bool()>& cancelled,
                                             const std::vector<std::string>& secrets) {
  absl::Status valid = Validate(spec);
  if (!valid.ok()) return valid;
  absl::StatusOr<Prepared> prep = Prepare(spec);
  if (!prep.ok()) return prep.status();

  const std::string label = spec.name.empty() ? spec.argv[0] : spec.name;
  int out_pipe[2], report_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  FdCloser out_r{out_pipe[0]}, out_w{out_pipe[1]};
  if (::pipe2(report_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  FdCloser report_r{report_pipe[0]}, report_w{report_pipe[1]};
  FdCloser stdin_r, stdin_w;
  if (spec.stdin_data.empty()) {
    stdin_r.fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (stdin_r.fd < 0) return absl::InternalError("cannot open /dev/null");
  } else {
    int in_pipe[2];
    if (::pipe2(in_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
    stdin_r.fd = in_pipe[0];
    stdin_w.fd = in_pipe[1];
  }

  const absl::Time start = absl::Now();
  const pid_t agent_pid = ::getpid();
  pid_t shim = ::fork();
  if (shim < 0) return absl::InternalError(absl::StrCat("fork failed: ", std::strerror(errno)));
  if (shim == 0) RunShim(spec, *prep, stdin_r.fd, out_w.fd, report_w.fd, agent_pid);
  out_w.Reset();
  report_w.Reset();
  stdin_r.Reset();

  auto reap_shim = [&] {
    int status = 0;
    while (::waitpid(shim, &status, 0) < 0 && errno == EINTR) {
    }
  };
  ShimMessage started{};
  ssize_t n;
  do {
    n = ::read(report_r.fd, &started, sizeof(started));
  } while (n < 0 && errno == EINTR);
  if (n != sizeof(started) || started.a <= 0) {
    int err = n == sizeof(started) ? started.b : 0;
    reap_shim();
    return absl::InternalError(
        absl::StrCat(label, ": could not start: ", err ? std::strerror(err) : "shim failed"));
  }
  const pid_t pgid = started.a;

  ::fcntl(out_r.fd, F_SETFL, O_NONBLOCK);
  if (stdin_w.fd >= 0) ::fcntl(stdin_w.fd, F_SETFL, O_NONBLOCK);
  size_t stdin_written = 0;

  CommandResult result;
  std::string tail;
  LineSplitter splitter(secrets, [&](std::string line) {
    ++result.output_lines;
    if (spec.is_private) return;
    if (sink) sink(line);
    tail.append(line).push_back('\n');
    if (tail.size() > 2 * kOutputTailBytes) tail.erase(0, tail.size() - kOutputTailBytes);
  });

  enum class Phase { kRunning, kTerminating, kKilled };
  enum class Reason { kNone, kCancelled, kTimeout };
  Phase phase = Phase::kRunning;
  Reason reason = Reason::kNone;
  absl::Time signal_time;
  const absl::Time deadline = start + spec.timeout;
  bool out_eof = false;
  bool report_done = false;
  ShimMessage done{};
  size_t done_bytes = 0;
  char buf[64 * 1024];

  while (!report_done || !out_eof) {
    pollfd fds[3];
    int nfds = 0;
    int out_idx = -1, report_idx = -1, stdin_idx = -1;
    if (!out_eof) {
      out_idx = nfds;
      fds[nfds++] = {out_r.fd, POLLIN, 0};
    }
    if (!report_done) {
      report_idx = nfds;
      fds[nfds++] = {report_r.fd, POLLIN, 0};
    }
    if (stdin_w.fd >= 0) {
      stdin_idx = nfds;
      fds[nfds++] = {stdin_w.fd, POLLOUT, 0};
    }
    // Once the shim reports the group gone, whatever still holds the output open escaped the
    // group; read what is there and stop.
    int wait_ms = report_done ? 0 : static_cast<int>(absl::ToInt64Milliseconds(kPollInterval));
    int ready = ::poll(fds, nfds, wait_ms);
    if (ready < 0 && errno != EINTR) break;
    if (out_idx >= 0 && (fds[out_idx].revents & (POLLIN | POLLHUP | POLLERR))) {
      for (int i = 0; i < 16; ++i) {  // Bounded, so cancel stays responsive under a flood.
        ssize_t got = ::read(out_r.fd, buf, sizeof(buf));
        if (got > 0) {
          splitter.Feed(std::string_view(buf, static_cast<size_t>(got)));
          continue;
        }
        if (got == 0) out_eof = true;
        break;
      }
    }
    if (report_idx >= 0 && (fds[report_idx].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t got = ::read(report_r.fd, reinterpret_cast<char*>(&done) + done_bytes,
                           sizeof(done) - done_bytes);
      if (got > 0) done_bytes += static_cast<size_t>(got);
      if (got == 0 || done_bytes == sizeof(done)) report_done = true;
    }
    if (stdin_idx >= 0 && (fds[stdin_idx].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t put = WriteWithoutSigpipe(stdin_w.fd, spec.stdin_data.data() + stdin_written,
                                        spec.stdin_data.size() - stdin_written);
      if (put > 0) stdin_written += static_cast<size_t>(put);
      if (put < 0 && errno != EAGAIN && errno != EINTR) stdin_written = spec.stdin_data.size();
      if (stdin_written == spec.stdin_data.size()) stdin_w.Reset();
    }
    if (report_done && !out_eof && ready == 0) break;

    const absl::Time now = absl::Now();
    if (phase == Phase::kRunning && !report_done) {
      if (cancelled && cancelled()) {
        reason = Reason::kCancelled;
      } else if (now >= deadline) {
        reason = Reason::kTimeout;
      }
      if (reason != Reason::kNone) {
        ::kill(-pgid, SIGTERM);
        phase = Phase::kTerminating;
        signal_time = now;
      }
    }
    if (phase == Phase::kTerminating && now - signal_time >= spec.kill_grace) {
      ::kill(-pgid, SIGKILL);
      phase = Phase::kKilled;
      signal_time = now;
    }
    if (phase == Phase::kKilled && now - signal_time > absl::Seconds(3)) {
      ::kill(shim, SIGKILL);  // The shim itself is stuck: give up on it.
      break;
    }
  }
  stdin_w.Reset();
  reap_shim();
  splitter.Finish();
  result.duration = absl::Now() - start;
  if (!spec.is_private) {
    result.output_tail =
        tail.size() > kOutputTailBytes ? tail.substr(tail.size() - kOutputTailBytes) : tail;
  }
  const bool group_gone = done_bytes == sizeof(done) && done.b == 1;

  std::string private_prefix = absl::StrCat("[private step: ", label, "] ");
  if (reason != Reason::kNone) {
    if (spec.is_private && sink) {
      sink(Redact(private_prefix + (reason == Reason::kCancelled ? "cancelled" : "timed out"),
                  secrets));
    }
    std::string what =
        absl::StrCat(label, reason == Reason::kCancelled ? " cancelled" : "",
                     reason == Reason::kTimeout ? " timed out after " : "",
                     reason == Reason::kTimeout ? absl::FormatDuration(spec.timeout) : "",
                     group_gone ? "" : " (its process group did not go away)");
    return reason == Reason::kCancelled ? absl::CancelledError(what)
                                        : absl::DeadlineExceededError(what);
  }
  if (done_bytes != sizeof(done)) {
    return absl::InternalError(absl::StrCat(label, ": lost track of the step's processes"));
  }
  int status = done.a;
  result.exit_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                     : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                           : 255;
  if (spec.is_private && sink) {
    sink(Redact(result.exit_code == 0
                    ? private_prefix + "ok"
                    : absl::StrCat(private_prefix, "failed (exit ", result.exit_code, ")"),
                secrets));
  }
  return result;
}

}  // namespace

std::string Redact(std::string_view text, const std::vector<std::string>& secrets) {
  return RedactPrefix(text, ExpandSecrets(secrets), std::string_view::npos);
}

absl::StatusOr<CommandResult> RunCommand(const CommandSpec& spec, const LineSink& sink,
                                         const std::function<bool()>& cancelled) {
  std::vector<std::string> secrets = ExpandSecrets(spec.secrets);
  absl::StatusOr<CommandResult> result = RunCommandImpl(spec, sink, cancelled, secrets);
  if (!result.ok()) return RedactStatus(result.status(), secrets);
  return result;
}

bool CanIsolate() {
  static const bool can = [] {
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) ::_exit(::unshare(CLONE_NEWNS | CLONE_NEWPID) == 0 ? 0 : 1);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }();
  return can;
}

}  // namespace kiln::builder
