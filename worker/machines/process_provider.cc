#include "worker/machines/process_provider.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status.h"
#include "worker/machines/agent_process.h"
#include "worker/machines/launcher.h"

extern char** environ;

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;
using internal::ProcStat;

// The state and exit files are a few key=value lines; anything larger is not ours.
constexpr size_t kMaxRecordBytes = 4096;
constexpr size_t kMaxTokenBytes = 16 * 1024;
// List reads at most this many project directories.
constexpr size_t kMaxListedMachines = 4096;
// How often a Wake polls a wake lock held by another worker process.
constexpr absl::Duration kWakeLockPoll = absl::Milliseconds(10);
// The only KILN_* variables of the worker an agent inherits (how it logs).
constexpr const char* kInheritedKilnVariables[] = {"KILN_LOG_FORMAT=", "KILN_LOG_LEVEL="};

constexpr char kVolume[] = "volume";
constexpr char kLog[] = "agent.log";
constexpr char kOldLog[] = "agent.log.1";
constexpr char kState[] = "state";
constexpr char kExit[] = "exit";
constexpr char kLockFile[] = "wake.lock";

std::string ErrnoText(int err) { return std::strerror(err); }

// Reads "key=value" lines; an absent file is an empty map.
std::map<std::string, std::string> ReadRecord(const std::string& path) {
  std::map<std::string, std::string> record;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return record;
  std::string content(kMaxRecordBytes, '\0');
  ssize_t n = ::read(fd, content.data(), content.size());
  ::close(fd);
  if (n <= 0) return record;
  content.resize(static_cast<size_t>(n));
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    record[kv.first] = kv.second;
  }
  return record;
}

template <typename T>
T RecordNumber(const std::map<std::string, std::string>& record, const std::string& key,
               T fallback) {
  auto it = record.find(key);
  T value;
  if (it == record.end() || !absl::SimpleAtoi(it->second, &value)) return fallback;
  return value;
}

// Writes `content` to `path` through a file of this process's own and a rename, so a reader
// (another worker process too) sees the old record or the new one, never half of one.
absl::Status WriteAtomically(const std::string& path, const std::string& content) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("create ", tmp, ": ", ErrnoText(errno)));
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
            ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("write ", path, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

// Appends one line of the worker's own to the agent's log (the wake, a failed exec, an exit),
// so that the log alone tells an operator what happened to the machine.
void AppendToLog(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return;  // Best effort: the worker's own log has the same event.
  std::string text = absl::StrCat("kiln-worker: ", line, "\n");
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool HasPair(const std::vector<std::string>& argv, const std::string& flag,
             const std::string& value) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag && argv[i + 1] == value) return true;
  }
  return std::find(argv.begin(), argv.end(), flag + "=" + value) != argv.end();
}

std::string FormatSeconds(absl::Duration d) {
  return absl::StrFormat("%.3f", absl::ToDoubleSeconds(d));
}

// The process provider's own machines: kiln-builder-agent as a local process.
class AgentLauncher : public internal::MachineLauncher {
 public:
  explicit AgentLauncher(const ProcessProviderOptions& options) : options_(options) {}

  std::string noun() const override { return "agent"; }
  std::string VolumePath(const std::string& dir) const override {
    return absl::StrCat(dir, "/", kVolume);
  }
  absl::Status PrepareVolume(const std::string& dir) override {
    std::error_code error;
    fs::create_directories(VolumePath(dir), error);
    if (error) return absl::InternalError(absl::StrCat("create ", dir, ": ", error.message()));
    return absl::OkStatus();
  }

  absl::StatusOr<internal::SpawnSpec> Command(const internal::LaunchContext& context) override {
    const WakeRequest& request = context.request;
    internal::SpawnSpec spec;
    spec.binary = options_.agent_binary;
    spec.argv = {options_.agent_binary,
                 "--orchestrator",
                 options_.orchestrator,
                 "--project",
                 request.project,
                 "--volume",
                 VolumePath(context.dir),
                 "--idle-grace",
                 FormatSeconds(options_.idle_grace)};
    if (!options_.registry.empty())
      spec.argv.insert(spec.argv.end(), {"--registry", options_.registry});
    if (!options_.registry_tls_verify) spec.argv.push_back("--no-registry-tls-verify");
    spec.argv.insert(spec.argv.end(), options_.extra_agent_args.begin(),
                     options_.extra_agent_args.end());
    for (char** env = environ; env != nullptr && *env != nullptr; ++env) {
      absl::string_view entry(*env);
      bool inherit = !absl::StartsWith(entry, "KILN_");
      for (const char* allowed : kInheritedKilnVariables) {
        inherit |= absl::StartsWith(entry, allowed);
      }
      if (inherit && spec.env.size() < internal::kMaxSpawnEnv - kMaxAgentEnv - 1) {
        spec.env.emplace_back(entry);
      }
    }
    spec.env.insert(spec.env.end(), options_.agent_env.begin(), options_.agent_env.end());
    // The agent's one credential: in its environment only (it unsets it at once).
    if (!request.token.empty()) spec.env.push_back(absl::StrCat("KILN_TOKEN=", request.token));
    spec.new_mount_namespace = options_.mount_namespace;
    return spec;
  }

  bool Matches(const std::vector<std::string>& argv, const std::string& project,
               const std::string& dir) const override {
    return !argv.empty() && Basename(argv[0]) == Basename(options_.agent_binary) &&
           HasPair(argv, "--project", project) && HasPair(argv, "--volume", VolumePath(dir));
  }

 private:
  const ProcessProviderOptions& options_;
};

}  // namespace

absl::Status internal::MachineLauncher::RequestStop(const std::string& dir, int pidfd) {
  (void)dir;
  return SignalPidfd(pidfd, SIGTERM);
}

// One project's machine. The fields below op_mu are guarded by the provider's mu_.
struct ProcessMachineProvider::Machine {
  // Serializes Wake, Stop and Destroy of this project within this process (the flock on
  // wake.lock does it across processes).
  absl::Mutex op_mu;

  pid_t pid = 0;  // 0: asleep.
  int pidfd = -1;
  uint64_t start_ticks = 0;
  bool child = false;  // Started by this process (else adopted).
  absl::Time woke_at = absl::InfinitePast();
  int last_exit_code = -1;
  std::string size;
};

// The flock on `<dir>/wake.lock`, held for the duration of a Wake, Stop or Destroy.
class ProcessMachineProvider::WakeLock {
 public:
  WakeLock() = default;
  ~WakeLock() {
    if (fd_ >= 0) ::close(fd_);  // Releases the flock.
  }
  WakeLock(const WakeLock&) = delete;
  WakeLock& operator=(const WakeLock&) = delete;

  absl::Status Acquire(const std::string& dir) {
    const std::string path = absl::StrCat(dir, "/", kLockFile);
    absl::Time deadline = absl::Now() + kWakeLockTimeout;
    while (true) {
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd_ < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", ErrnoText(errno)));
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        // Destroy removes the directory under its lock: a lock taken on the removed file is
        // no lock at all. Keep it only if the path still names the file locked.
        struct stat held, named;
        if (::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &named) == 0 &&
            held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
          return absl::OkStatus();
        }
      } else if (errno != EWOULDBLOCK && errno != EINTR) {
        return absl::InternalError(absl::StrCat("flock ", path, ": ", ErrnoText(errno)));
      }
      ::close(fd_);
      fd_ = -1;
      if (absl::Now() > deadline) {
        return absl::UnavailableError(absl::StrCat(path, " is held by another worker for over ",
                                                   absl::FormatDuration(kWakeLockTimeout)));
      }
      // Another worker process holds it for one wake or stop: a short, bounded wait.
      absl::SleepFor(kWakeLockPoll);
      // The directory may be gone (destroyed meanwhile): recreate it, as Wake would.
      std::error_code ignored;  // open() above reports what matters.
      fs::create_directories(dir, ignored);
    }
  }

 private:
  int fd_ = -1;
};

absl::StatusOr<std::unique_ptr<ProcessMachineProvider>> ProcessMachineProvider::Create(
    ProcessProviderOptions options) {
  if (options.machines_dir.empty()) return absl::InvalidArgumentError("machines_dir is empty");
  if (options.launcher == nullptr &&
      (options.agent_binary.empty() || options.agent_binary[0] != '/')) {
    return absl::InvalidArgumentError("agent_binary must be an absolute path");
  }
  if (options.orchestrator.empty()) return absl::InvalidArgumentError("orchestrator is empty");
  if (options.max_machines < 1 || options.max_machines > kMaxMachinesLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_machines must be within [1, ", kMaxMachinesLimit, "]"));
  }
  if (options.idle_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_grace is negative");
  }
  if (options.extra_agent_args.size() > kMaxExtraAgentArgs) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxExtraAgentArgs, " extra agent arguments"));
  }
  if (options.agent_env.size() > kMaxAgentEnv) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxAgentEnv, " agent environment variables"));
  }
  for (const std::string& entry : options.agent_env) {
    if (entry.find('=') == std::string::npos || absl::StartsWith(entry, "KILN_TOKEN=")) {
      return absl::InvalidArgumentError(
          "agent_env entries are NAME=value (and never KILN_TOKEN: each wake brings its own)");
    }
  }
  std::unique_ptr<ProcessMachineProvider> provider(new ProcessMachineProvider(std::move(options)));
  RETURN_IF_ERROR(provider->Init());
  return provider;
}

ProcessMachineProvider::ProcessMachineProvider(ProcessProviderOptions options)
    : options_(std::move(options)),
      launcher_(options_.launcher != nullptr ? options_.launcher
                                             : std::make_shared<AgentLauncher>(options_)) {}

absl::Status ProcessMachineProvider::Init() {
  std::error_code error;
  fs::create_directories(options_.machines_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("create ", options_.machines_dir, ": ", error.message()));
  }
  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", ErrnoText(errno)));

  // Adopt what a previous worker left running; the rest is asleep.
  int adopted = 0, asleep = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.machines_dir, error)) {
    std::string project = entry.path().filename().string();
    if (!entry.is_directory() || !ValidateProjectId(project).ok()) continue;
    std::shared_ptr<Machine> machine = GetMachine(project);
    if (AdoptRecorded(project, *machine)) {
      ++adopted;
    } else {
      ++asleep;
    }
    if (adopted + asleep >= static_cast<int>(kMaxListedMachines)) break;
  }
  if (error) {
    return absl::InternalError(absl::StrCat("list ", options_.machines_dir, ": ", error.message()));
  }
  LogInfo("machines.process.started", {{"dir", options_.machines_dir},
                                       {"adopted", adopted},
                                       {"asleep", asleep},
                                       {"max_machines", options_.max_machines}});
  monitor_ = std::thread([this] { Monitor(); });
  return absl::OkStatus();
}

ProcessMachineProvider::~ProcessMachineProvider() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (monitor_.joinable()) {
    Notify();
    monitor_.join();
  }
  absl::MutexLock lock(&mu_);
  for (auto& [project, machine] : machines_) {
    if (machine->pidfd >= 0) ::close(machine->pidfd);
    machine->pidfd = -1;
  }
  if (event_fd_ >= 0) ::close(event_fd_);
}

std::string ProcessMachineProvider::Dir(const std::string& project) const {
  return absl::StrCat(options_.machines_dir, "/", project);
}

std::shared_ptr<ProcessMachineProvider::Machine> ProcessMachineProvider::GetMachine(
    const std::string& project) {
  {
    absl::MutexLock lock(&mu_);
    auto it = machines_.find(project);
    if (it != machines_.end()) return it->second;
  }
  // What earlier wakes (of this worker or another) recorded.
  auto state = ReadRecord(absl::StrCat(Dir(project), "/", kState));
  auto exit = ReadRecord(absl::StrCat(Dir(project), "/", kExit));
  auto fresh = std::make_shared<Machine>();
  int64_t woke_ms = RecordNumber<int64_t>(state, "woke_at_unix_ms", 0);
  if (woke_ms > 0) fresh->woke_at = absl::FromUnixMillis(woke_ms);
  if (state.count("size")) fresh->size = state["size"];
  fresh->last_exit_code = RecordNumber<int>(exit, "exit_code", -1);
  absl::MutexLock lock(&mu_);
  return machines_.try_emplace(project, std::move(fresh)).first->second;
}

bool ProcessMachineProvider::Matches(pid_t pid, uint64_t start_ticks,
                                     const std::string& project) const {
  absl::StatusOr<ProcStat> stat = internal::ReadProcStat(pid);
  if (!stat.ok() || stat->start_ticks != start_ticks) return false;
  absl::StatusOr<std::vector<std::string>> argv = internal::ReadProcCmdline(pid);
  if (!argv.ok() || argv->empty()) return false;
  return launcher_->Matches(*argv, project, Dir(project));
}

bool ProcessMachineProvider::AdoptRecorded(const std::string& project, Machine& machine) {
  auto state = ReadRecord(absl::StrCat(Dir(project), "/", kState));
  pid_t pid = RecordNumber<pid_t>(state, "pid", 0);
  uint64_t start_ticks = RecordNumber<uint64_t>(state, "start_ticks", 0);
  {
    absl::MutexLock lock(&mu_);
    if (machine.pid != 0) return true;
  }
  if (pid <= 0) return false;
  absl::StatusOr<int> pidfd = internal::OpenPidfd(pid);
  if (!pidfd.ok()) return false;
  // Checked after the pidfd is open: the pidfd then names the process that was checked.
  absl::StatusOr<ProcStat> stat = internal::ReadProcStat(pid);
  bool ours = stat.ok() && stat->start_ticks == start_ticks;
  if (ours && (stat->state == 'Z' || stat->state == 'X')) {
    // It exited while nobody followed it; if it is this process's child (a provider destroyed
    // and created again), reap it now and keep its exit code.
    absl::StatusOr<int> code = internal::ReapPidfd(*pidfd);
    ::close(*pidfd);
    if (code.ok() && *code >= 0) {
      absl::MutexLock lock(&mu_);
      machine.last_exit_code = *code;
    }
    return false;
  }
  if (!ours || !Matches(pid, start_ticks, project)) {
    ::close(*pidfd);
    return false;
  }
  int64_t woke_ms = RecordNumber<int64_t>(state, "woke_at_unix_ms", 0);
  absl::MutexLock lock(&mu_);
  if (state.count("size")) machine.size = state["size"];
  Follow(machine, *pidfd, pid, start_ticks,
         woke_ms > 0 ? absl::FromUnixMillis(woke_ms) : absl::InfinitePast(), /*child=*/false);
  LogInfo("machines.adopted", {{"project", project}, {"pid", static_cast<int>(pid)}});
  return true;
}

void ProcessMachineProvider::Follow(Machine& machine, int pidfd, pid_t pid, uint64_t start_ticks,
                                    absl::Time woke_at, bool child) {
  if (machine.pid == pid && machine.start_ticks == start_ticks) {
    ::close(pidfd);  // Already followed (adopted by a concurrent Status, say).
    machine.child = machine.child || child;
    return;
  }
  if (machine.pidfd >= 0) ::close(machine.pidfd);
  machine.pid = pid;
  machine.pidfd = pidfd;
  machine.start_ticks = start_ticks;
  machine.child = child;
  machine.woke_at = woke_at;
  Notify();
}

void ProcessMachineProvider::Notify() {
  uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);  // Only fails when the counter is full: awake.
}

absl::StatusOr<WakeResult> ProcessMachineProvider::Wake(const WakeRequest& request) {
  RETURN_IF_ERROR(ValidateProjectId(request.project));
  if (request.size != "small" && request.size != "medium" && request.size != "large") {
    return absl::InvalidArgumentError("size must be small, medium or large");
  }
  if (request.token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("token over ", kMaxTokenBytes, " bytes"));
  }
  const absl::Time began = absl::Now();
  const std::string& project = request.project;
  std::shared_ptr<Machine> machine = GetMachine(project);
  absl::MutexLock op(&machine->op_mu);
  std::error_code error;
  fs::create_directories(Dir(project), error);
  if (error) {
    return absl::InternalError(absl::StrCat("create ", Dir(project), ": ", error.message()));
  }
  WakeLock lock;
  RETURN_IF_ERROR(lock.Acquire(Dir(project)));
  if (AdoptRecorded(project, *machine)) {
    absl::MutexLock guard(&mu_);
    if (machine->pid != 0) {
      return WakeResult{.already_awake = true, .pid = machine->pid, .took = absl::Now() - began};
    }
  }
  {
    absl::MutexLock guard(&mu_);
    int awake = 0;
    for (const auto& [name, other] : machines_) awake += other->pid != 0 ? 1 : 0;
    // Counted under op_mu of this project only: two projects waking at once could both pass.
    // starting_ closes that window.
    if (awake + starting_ >= options_.max_machines) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot wake ", project, ": ", options_.max_machines, " machines are awake (the limit)"));
    }
    ++starting_;
  }
  absl::Status prepared = launcher_->PrepareVolume(Dir(project));
  absl::StatusOr<WakeResult> result =
      prepared.ok() ? Start(request, *machine, began) : absl::StatusOr<WakeResult>(prepared);
  absl::MutexLock guard(&mu_);
  --starting_;
  return result;
}

absl::StatusOr<WakeResult> ProcessMachineProvider::Start(const WakeRequest& request,
                                                         Machine& machine, absl::Time began) {
  absl::StatusOr<WakeResult> result = StartOnce(request, machine, began);
  if (absl::IsAborted(result.status())) {
    // The launcher asked for one more start (a microVM's snapshot was stale: it boots cold).
    LogWarn("machines.restarting", {{"project", request.project}, {"why", result.status()}});
    result = StartOnce(request, machine, began);
  }
  return result;
}

absl::StatusOr<WakeResult> ProcessMachineProvider::StartOnce(const WakeRequest& request,
                                                             Machine& machine, absl::Time began) {
  const std::string& project = request.project;
  const std::string dir = Dir(project);
  const std::string log_path = absl::StrCat(dir, "/", kLog);
  struct stat log_stat;
  if (::stat(log_path.c_str(), &log_stat) == 0 && log_stat.st_size > kMaxAgentLogBytes) {
    // One old generation is kept; an agent lives for a few builds, so this bounds the log.
    if (::rename(log_path.c_str(), absl::StrCat(dir, "/", kOldLog).c_str()) != 0) {
      LogWarn("machines.log_rotate_failed", {{"project", project}, {"error", ErrnoText(errno)}});
    }
  }
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("open ", log_path, ": ", ErrnoText(errno)));
  }
  const absl::Time woke_at = absl::Now();
  AppendToLog(log_path, absl::StrCat("waking ", project, " (", request.size, ") at ",
                                     absl::FormatTime(woke_at)));

  const internal::LaunchContext context{.request = request, .dir = dir, .log_path = log_path};
  absl::StatusOr<internal::SpawnSpec> command = launcher_->Command(context);
  if (!command.ok()) {
    ::close(log_fd);
    AppendToLog(log_path, absl::StrCat("cannot start the ", launcher_->noun(), ": ",
                                       command.status().message()));
    return command.status();
  }
  internal::SpawnSpec& spec = *command;
  spec.output_fd = log_fd;
  spec.new_mount_namespace = options_.mount_namespace;
  absl::StatusOr<internal::Spawned> spawned = internal::SpawnDetached(spec);
  ::close(log_fd);
  if (!spawned.ok()) return spawned.status();

  if (spawned->namespace_errno != 0) {
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
      LogWarn("machines.mount_namespace_unavailable",
              {{"error", ErrnoText(spawned->namespace_errno)},
               {"effect", "agents share the worker's mount namespace"}});
    }
  }
  if (spawned->exec_errno != 0) {
    std::string why =
        absl::StrCat("cannot start ", spec.binary, ": ", ErrnoText(spawned->exec_errno));
    AppendToLog(log_path, why);
    (void)WriteAtomically(absl::StrCat(dir, "/", kExit),
                          absl::StrCat("pid=", spawned->pid, "\nexit_code=127\n"))
        .IgnoreError();  // The in-memory code below is what Status reports now.
    {
      absl::MutexLock lock(&mu_);
      machine.last_exit_code = 127;
      machine.woke_at = woke_at;
      machine.size = request.size;
    }
    LogError("machines.wake_failed", {{"project", project}, {"error", why}});
    return absl::UnavailableError(why);
  }

  absl::Status recorded =
      WriteAtomically(absl::StrCat(dir, "/", kState),
                      absl::StrCat("pid=", spawned->pid, "\nstart_ticks=", spawned->start_ticks,
                                   "\nwoke_at_unix_ms=", absl::ToUnixMillis(woke_at),
                                   "\nsize=", request.size, "\n"));
  // The monitor follows (and reaps) the process from here on; Started may take a while (a
  // microVM booting), so the provider's lock is not held across it.
  int pidfd = -1;
  {
    absl::MutexLock lock(&mu_);
    machine.size = request.size;
    Follow(machine, spawned->pidfd, spawned->pid, spawned->start_ticks, woke_at, /*child=*/true);
    pidfd = machine.pidfd;
  }
  auto end_it = [&](const absl::Status& why, const std::string& what) -> absl::Status {
    // The process cannot be left running unrecorded or unconfigured: end it and wait until the
    // monitor has seen it go, so a retry finds the machine asleep.
    absl::MutexLock lock(&mu_);
    if (machine.pid == spawned->pid) {
      (void)internal::SignalPidfd(machine.pidfd, SIGKILL).IgnoreError();  // Gone either way.
      auto gone = [](std::pair<Machine*, pid_t>* m) { return m->first->pid != m->second; };
      std::pair<Machine*, pid_t> watched{&machine, spawned->pid};
      mu_.AwaitWithTimeout(absl::Condition(+gone, &watched), kKillWait);
    }
    AppendToLog(log_path, absl::StrCat(what, ": ", why.message()));
    return Annotate(why, what);
  };
  if (!recorded.ok()) return end_it(recorded, absl::StrCat("recording the ", launcher_->noun()));
  absl::Status started = launcher_->Started(context, pidfd);
  if (!started.ok()) {
    absl::Status ended = end_it(started, absl::StrCat("starting the ", launcher_->noun()));
    return absl::IsAborted(started) ? started : ended;
  }
  absl::Duration took = absl::Now() - began;
  LogInfo("machines.woke", {{"project", project},
                            {"pid", static_cast<int>(spawned->pid)},
                            {"size", request.size},
                            {"took", took}});
  return WakeResult{.already_awake = false, .pid = spawned->pid, .took = took};
}

void ProcessMachineProvider::Monitor() {
  std::vector<pollfd> fds;
  std::vector<std::string> projects;
  while (true) {
    fds.clear();
    projects.clear();
    fds.push_back({event_fd_, POLLIN, 0});
    projects.emplace_back();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (const auto& [project, machine] : machines_) {
        if (machine->pidfd < 0) continue;
        fds.push_back({machine->pidfd, POLLIN, 0});
        projects.push_back(project);
      }
    }
    int n = ::poll(fds.data(), fds.size(), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LogError("machines.monitor_failed", {{"error", ErrnoText(errno)}});
      return;
    }
    if (fds[0].revents != 0) {
      uint64_t drained;
      (void)!::read(event_fd_, &drained, sizeof drained);  // EAGAIN: already drained.
    }
    // pidfds are closed only here (and after this thread ends), so the numbers polled still
    // name the same processes.
    absl::MutexLock lock(&mu_);
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = machines_.find(projects[i]);
      if (it == machines_.end() || it->second->pidfd != fds[i].fd) continue;
      OnExit(projects[i], *it->second);
    }
  }
}

void ProcessMachineProvider::OnExit(const std::string& project, Machine& machine) {
  absl::StatusOr<int> code = internal::ReapPidfd(machine.pidfd);
  if (!code.ok() && absl::IsUnavailable(code.status())) return;  // Not exited after all.
  const pid_t pid = machine.pid;
  ::close(machine.pidfd);
  machine.pidfd = -1;
  machine.pid = 0;
  const std::string dir = Dir(project);
  machine.last_exit_code = launcher_->AgentExitCode(dir, code.ok() ? *code : -1);
  const absl::Duration ran = absl::Now() - machine.woke_at;
  (void)WriteAtomically(absl::StrCat(dir, "/", kExit),
                        absl::StrCat("pid=", pid, "\nstart_ticks=", machine.start_ticks,
                                     "\nexit_code=", machine.last_exit_code, "\n"))
      .IgnoreError();  // Lost only if the directory went: the machine was destroyed.
  AppendToLog(
      absl::StrCat(dir, "/", kLog),
      absl::StrCat(launcher_->noun(), " pid ", pid, " exited with code ", machine.last_exit_code,
                   machine.last_exit_code < 0 ? " (not our child: code unknown)" : "", " after ",
                   FormatSeconds(ran), " s"));
  LogInfo("machines.exited", {{"project", project},
                              {"pid", static_cast<int>(pid)},
                              {"exit_code", machine.last_exit_code},
                              {"ran", ran}});
}

MachineStatus ProcessMachineProvider::StatusOf(const std::string& project,
                                               const Machine& machine) const {
  MachineStatus status;
  status.project = project;
  status.state = machine.pid != 0 ? MachineState::kAwake : MachineState::kAsleep;
  status.pid = machine.pid;
  status.woke_at = machine.woke_at;
  status.last_exit_code = machine.last_exit_code;
  status.log_path = absl::StrCat(Dir(project), "/", kLog);
  status.volume = launcher_->VolumePath(Dir(project));
  return status;
}

absl::StatusOr<MachineStatus> ProcessMachineProvider::Status(const std::string& project) {
  RETURN_IF_ERROR(ValidateProjectId(project));
  std::error_code error;
  bool known;
  {
    absl::MutexLock lock(&mu_);
    known = machines_.count(project) > 0;
  }
  if (!known && !fs::is_directory(Dir(project), error)) {
    // Never woken: asleep, with the paths it would have (no entry made for a mere question).
    Machine never;
    absl::MutexLock lock(&mu_);
    return StatusOf(project, never);
  }
  std::shared_ptr<Machine> machine = GetMachine(project);
  // An agent another worker process started on this directory is followed from now on.
  (void)AdoptRecorded(project, *machine);
  absl::MutexLock lock(&mu_);
  return StatusOf(project, *machine);
}

absl::StatusOr<std::vector<MachineStatus>> ProcessMachineProvider::List() {
  std::vector<std::string> projects;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.machines_dir, error)) {
    std::string project = entry.path().filename().string();
    if (entry.is_directory() && ValidateProjectId(project).ok()) projects.push_back(project);
    if (projects.size() >= kMaxListedMachines) break;
  }
  if (error) {
    return absl::InternalError(absl::StrCat("list ", options_.machines_dir, ": ", error.message()));
  }
  std::sort(projects.begin(), projects.end());
  std::vector<MachineStatus> statuses;
  statuses.reserve(projects.size());
  for (const std::string& project : projects) {
    ASSIGN_OR_RETURN(MachineStatus status, Status(project));
    statuses.push_back(std::move(status));
  }
  return statuses;
}

absl::Status ProcessMachineProvider::Stop(const std::string& project, absl::Duration grace) {
  RETURN_IF_ERROR(ValidateProjectId(project));
  std::error_code error;
  if (!fs::is_directory(Dir(project), error)) return absl::OkStatus();  // Never woken.
  std::shared_ptr<Machine> machine = GetMachine(project);
  absl::MutexLock op(&machine->op_mu);
  WakeLock lock;
  RETURN_IF_ERROR(lock.Acquire(Dir(project)));
  return StopLocked(project, *machine, grace);
}

absl::Status ProcessMachineProvider::StopLocked(const std::string& project, Machine& machine,
                                                absl::Duration grace) {
  (void)AdoptRecorded(project, machine);  // Follows an agent another worker started.
  auto gone = [](Machine* m) { return m->pid == 0; };
  absl::MutexLock lock(&mu_);
  if (machine.pid == 0) return absl::OkStatus();
  const pid_t pid = machine.pid;
  LogInfo("machines.stopping", {{"project", project}, {"pid", static_cast<int>(pid)}});
  // By pidfd: the signal reaches this agent, never a process that reused its pid.
  absl::Status sent = launcher_->RequestStop(Dir(project), machine.pidfd);
  if (!sent.ok() && !absl::IsNotFound(sent)) return sent;
  if (mu_.AwaitWithTimeout(absl::Condition(+gone, &machine), grace)) return absl::OkStatus();
  LogWarn("machines.killing",
          {{"project", project}, {"pid", static_cast<int>(pid)}, {"grace", grace}});
  sent = internal::SignalPidfd(machine.pidfd, SIGKILL);
  if (!sent.ok() && !absl::IsNotFound(sent)) return sent;
  if (mu_.AwaitWithTimeout(absl::Condition(+gone, &machine), kKillWait)) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("agent pid ", pid, " of ", project,
                                                  " outlived SIGKILL by ",
                                                  absl::FormatDuration(kKillWait)));
}

absl::Status ProcessMachineProvider::Destroy(const std::string& project) {
  RETURN_IF_ERROR(ValidateProjectId(project));
  std::error_code error;
  if (!fs::is_directory(Dir(project), error)) return absl::OkStatus();
  std::shared_ptr<Machine> machine = GetMachine(project);
  absl::MutexLock op(&machine->op_mu);
  WakeLock lock;
  RETURN_IF_ERROR(lock.Acquire(Dir(project)));
  RETURN_IF_ERROR(StopLocked(project, *machine, kDestroyStopGrace));
  fs::remove_all(Dir(project), error);
  if (error) {
    return absl::InternalError(absl::StrCat("remove ", Dir(project), ": ", error.message()));
  }
  {
    absl::MutexLock guard(&mu_);
    machine->woke_at = absl::InfinitePast();
    machine->last_exit_code = -1;
    machine->size.clear();
  }
  LogInfo("machines.destroyed", {{"project", project}});
  return absl::OkStatus();
}

}  // namespace kiln::worker
