#include "tests/testutil/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#ifndef KILN_BINARY_DIR
#error "KILN_BINARY_DIR must be defined by the build"
#endif

namespace kiln::testutil {

std::string BinaryDir() {
  // KILN_BINARY_DIR in the environment wins, so that a benchmark can be run against a copy of
  // the binaries (comparing two builds) rather than the build tree it was compiled in.
  const char* dir = std::getenv("KILN_BINARY_DIR");
  return dir != nullptr && *dir != '\0' ? dir : KILN_BINARY_DIR;
}
std::string BinaryPath(const std::string& name) { return absl::StrCat(BinaryDir(), "/", name); }

namespace {

// What CleanUpOnInterrupt stops and removes: every TempDir and tracked child alive now.
struct Live {
  std::mutex mu;
  std::set<std::string> dirs;
  std::set<pid_t> children;
};
Live& TheLive() {
  static Live* live = new Live;  // never destroyed: the interrupt may come during exit
  return *live;
}

bool KeepDirs() {
  const char* keep = std::getenv("KILN_TEST_KEEP_DIRS");
  return keep != nullptr && *keep == '1';
}

// Unmounts what podman left under `path` (a storage's overlay directory), deepest first, and
// removes it. Best effort: a leftover temp dir is not a test failure.
void RemoveDir(const std::string& path) {
  std::vector<std::string> mounts;
  std::ifstream table("/proc/self/mounts");
  std::string device, target, rest;
  while (table >> device >> target && std::getline(table, rest)) {
    if (absl::StartsWith(target, path + "/")) mounts.push_back(target);
  }
  std::sort(mounts.rbegin(), mounts.rend());
  for (const std::string& mount : mounts) umount2(mount.c_str(), MNT_DETACH);
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

int interrupt_pipe[2] = {-1, -1};
std::atomic<int> interrupts{0};

void OnInterrupt(int signo) {
  if (interrupts.fetch_add(1) > 0) ::_exit(128 + signo);
  const unsigned char byte = static_cast<unsigned char>(signo);
  if (::write(interrupt_pipe[1], &byte, 1) != 1) ::_exit(128 + signo);
}

}  // namespace

void TrackChild(pid_t pid) {
  Live& live = TheLive();
  std::lock_guard lock(live.mu);
  live.children.insert(pid);
}

void UntrackChild(pid_t pid) {
  Live& live = TheLive();
  std::lock_guard lock(live.mu);
  live.children.erase(pid);
}

void CleanUpOnInterrupt() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::pipe2(interrupt_pipe, O_CLOEXEC) != 0) return;  // then the default action stays
    // The thread never takes the signals itself (it inherits them blocked), so that a process
    // that blocks them everywhere else to sigwait for them (a benchmark's role) still does.
    sigset_t stops, before;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stops, &before);
    std::thread([] {
      unsigned char signo = 0;
      while (::read(interrupt_pipe[0], &signo, 1) < 0 && errno == EINTR) {
      }
      Live& live = TheLive();
      // Held to the end: nothing starts or is forgotten meanwhile.
      std::lock_guard lock(live.mu);
      // The children first, so that none still writes into a directory being removed.
      for (pid_t pid : live.children) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
      const bool keep = KeepDirs();
      if (!keep) {
        for (const std::string& dir : live.dirs) RemoveDir(dir);
      }
      std::fprintf(
          stderr,
          "\ninterrupted (signal %d): %zu child processes killed, %zu temporary directories %s\n",
          signo, live.children.size(), live.dirs.size(),
          keep ? "kept (KILN_TEST_KEEP_DIRS=1)" : "removed");
      ::_exit(128 + signo);
    }).detach();
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    struct sigaction action = {};
    action.sa_handler = OnInterrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
  });
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(base ? base : "/tmp", "/kiln-test-XXXXXX");
  char* made = ::mkdtemp(templ.data());
  path_ = made ? made : "";
  if (!path_.empty()) {
    Live& live = TheLive();
    std::lock_guard lock(live.mu);
    live.dirs.insert(path_);
  }
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  {
    Live& live = TheLive();
    std::lock_guard lock(live.mu);
    live.dirs.erase(path_);
  }
  // To read the logs of a failed run's processes afterwards.
  if (KeepDirs()) {
    std::fprintf(stderr, "KILN_TEST_KEEP_DIRS: kept %s\n", path_.c_str());
    return;
  }
  RemoveDir(path_);
}

absl::StatusOr<std::unique_ptr<Process>> Process::Start(const std::string& binary,
                                                        const std::vector<std::string>& args,
                                                        const std::string& log_path,
                                                        const std::vector<std::string>& env) {
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = env;

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // A test or benchmark that crashes must not leave its processes behind (the destructor
    // that would stop them never runs): the child is killed when its parent dies. The signal
    // follows the thread that forked, so start processes from a thread that outlives them (the
    // test's own). If the parent died before this line, exit now.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    for (auto& e : env_storage) ::putenv(e.data());
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  TrackChild(pid);
  return std::unique_ptr<Process>(new Process(pid, log_path));
}

Process::~Process() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    UntrackChild(pid_);
  }
}

void Process::Signal(int signo) {
  if (!reaped_) ::kill(pid_, signo);
}

absl::StatusOr<int> Process::Wait(absl::Duration timeout) {
  if (reaped_) return exit_code_;
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      UntrackChild(pid_);
      reaped_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " still running"));
    }
    ::usleep(2000);
  }
}

bool Process::Running() { return !Wait(absl::ZeroDuration()).ok(); }

std::string Process::Output() const { return ReadFile(log_path_); }

absl::StatusOr<int> RunCommand(const std::string& binary, const std::vector<std::string>& args,
                               std::string* output, absl::Duration timeout) {
  TempDir dir;
  std::string log = dir.path() + "/out.log";
  auto process = Process::Start(binary, args, log);
  if (!process.ok()) return process.status();
  auto code = (*process)->Wait(timeout);
  if (output) *output = ReadFile(log);
  return code;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (absl::Now() > deadline) return false;
    ::usleep(5000);
  }
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::pair<pid_t, std::string>> ProcessesNaming(const std::string& text) {
  std::vector<std::pair<pid_t, std::string>> found;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (pid == self) continue;
    // ReadFile, not an istreambuf_iterator: a process that exits while its cmdline is read
    // fails the read with ESRCH, which libstdc++'s filebuf throws through the iterator.
    std::string cmdline = ReadFile(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (absl::StrContains(cmdline, text)) found.emplace_back(pid, std::move(cmdline));
  }
  return found;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::trunc) << content;
}

absl::StatusOr<std::string> Git(const std::vector<std::string>& args, const std::string& repo) {
  std::vector<std::string> full;
  if (!repo.empty()) full = {"-C", repo};
  for (const char* setting : {"user.name=Kiln Test", "user.email=test@kiln.invalid",
                              "commit.gpgsign=false", "tag.gpgsign=false"}) {
    full.push_back("-c");
    full.push_back(setting);
  }
  full.insert(full.end(), args.begin(), args.end());
  std::string output;
  absl::StatusOr<int> code = RunCommand("/usr/bin/git", full, &output);
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(
        absl::StrCat("git ", args.empty() ? "" : args[0], " exited ", *code, ": ", output));
  }
  return std::string(absl::StripAsciiWhitespace(output));
}

}  // namespace kiln::testutil
