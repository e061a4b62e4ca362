#include "worker/deploy/podman_target.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxNameChars = 64;
constexpr size_t kShortDeploymentChars = 24;
constexpr absl::Duration kHealthConnectTimeout = absl::Milliseconds(500);
constexpr absl::Duration kHealthRequestTimeout = absl::Seconds(2);
constexpr absl::Duration kHealthFirstPause = absl::Milliseconds(20);
constexpr absl::Duration kHealthMaxPause = absl::Milliseconds(250);
// How often a container that does not answer yet is asked whether it still runs.
constexpr absl::Duration kLivenessEvery = absl::Milliseconds(500);
constexpr char kLogMaxSize[] = "max-size=10mb";
// Containers waiting to be stopped in the background; past it a deploy stops its own.
constexpr size_t kMaxRetiring = 64;
constexpr size_t kMaxHttpHeadBytes = 4096;

std::string SlotKey(const std::string& project, const std::string& slot) {
  return absl::StrCat(project, "/", slot);
}

// Safe in a label, a container name and a path: [A-Za-z0-9._-], not starting with '.' or '-'.
bool SafeName(const std::string& s) {
  if (s.empty() || s.size() > kMaxNameChars || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// The container's name: lower case, [a-z0-9._-] (podman takes upper case too; people type it).
// Unique per deployment: a platform deployment id ("<project>-<commit7>-<suffix>") loses its
// project prefix and keeps its commit and suffix, so a rollback to a commit never takes the name
// of the container that serves the same commit.
std::string ContainerName(const DeployRequest& r) {
  std::string id(absl::StripPrefix(r.deployment_id, r.project + "-"));
  if (id.size() > kShortDeploymentChars) id = id.substr(id.size() - kShortDeploymentChars);
  return absl::AsciiStrToLower(absl::StrCat("kiln-", r.project, "-", r.slot, "-", id));
}

std::string Ms(absl::Duration d) { return absl::StrCat(absl::ToInt64Milliseconds(d), " ms"); }

// A TCP port on 127.0.0.1 that was free a moment ago. The container binds it itself, so it
// cannot be held for it; a process taking it meanwhile makes the health check fail or, worse,
// answer: the labels name the port, and the window is a few hundred milliseconds.
absl::StatusOr<int> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::UnavailableError("no free port");
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// One health probe: the HTTP status of GET http://127.0.0.1:<port><path>, or why there is none.
absl::StatusOr<int> HttpStatus(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) return absl::UnavailableError(std::strerror(errno));
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kHealthConnectTimeout))) <= 0) {
      return absl::DeadlineExceededError("connect timed out");
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return absl::UnavailableError(std::strerror(err));
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  absl::Time deadline = absl::Now() + kHealthRequestTimeout;
  size_t sent = 0;
  std::string head;
  while (head.find("\r\n") == std::string::npos && head.size() < kMaxHttpHeadBytes) {
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) return absl::DeadlineExceededError("no answer in time");
    pollfd p{fd, static_cast<short>(sent < request.size() ? POLLOUT : POLLIN), 0};
    if (::poll(&p, 1, wait_ms) <= 0) continue;
    if (sent < request.size()) {
      ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return absl::UnavailableError(std::strerror(errno));
      }
      if (n > 0) sent += static_cast<size_t>(n);
      continue;
    }
    char buf[1024];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(std::strerror(errno));
    }
    head.append(buf, static_cast<size_t>(n));
  }
  if (head.empty()) return absl::UnavailableError("closed without an answer");
  // "HTTP/1.x NNN ..."
  std::vector<absl::string_view> parts = absl::StrSplit(head.substr(0, head.find("\r\n")), ' ');
  int status = 0;
  if (parts.size() < 2 || !absl::StartsWith(parts[0], "HTTP/") ||
      !absl::SimpleAtoi(parts[1], &status)) {
    return absl::DataLossError("not an HTTP answer");
  }
  return status;
}

absl::Status ValidateRequest(const DeployRequest& r) {
  if (!SafeName(r.project) || !SafeName(r.deployment_id)) {
    return absl::InvalidArgumentError(
        "project and deployment id must be [A-Za-z0-9._-], at most 64 characters");
  }
  if (!SafeName(r.slot) || !std::all_of(r.slot.begin(), r.slot.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      })) {
    return absl::InvalidArgumentError("slot must be [a-z0-9-] (see PreviewSlot)");
  }
  if (!absl::StrContains(r.image, "@sha256:") ||
      r.image.find_first_of(" \t\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("image must be <repository>@sha256:<digest>");
  }
  if (r.public_port < 0 || r.public_port > 65535) {
    return absl::InvalidArgumentError("public port out of range");
  }
  if (r.health_path.empty() || r.health_path[0] != '/' ||
      r.health_path.find_first_of(" \t\r\n") != std::string::npos || r.health_path.size() > 1024) {
    return absl::InvalidArgumentError("health path must start with / and hold no whitespace");
  }
  if (r.health_timeout <= absl::ZeroDuration() || r.health_timeout > kMaxHealthTimeout) {
    return absl::InvalidArgumentError("health timeout out of range");
  }
  if (r.env.size() > kMaxDeployEnv) return absl::InvalidArgumentError("too many variables");
  for (const auto& [k, v] : r.env) {
    if (k.empty() || k == "PORT" || k.find_first_of("=\n\r\t ") != std::string::npos ||
        v.size() > kMaxEnvValueBytes || v.find_first_of("\n\r") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad variable ", k,
                                                     " (PORT is set by the target; values are "
                                                     "one line)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

PodmanDeployTarget::PodmanDeployTarget(PodmanDeployOptions options,
                                       std::unique_ptr<builder::Podman> podman,
                                       std::unique_ptr<PortProxy> proxy)
    : options_(std::move(options)), podman_(std::move(podman)), proxy_(std::move(proxy)) {
  retirer_ = std::thread([this] { RetireLoop(); });
}

PodmanDeployTarget::~PodmanDeployTarget() {
  {
    absl::MutexLock lock(&retire_mu_);
    stopping_ = true;
  }
  if (retirer_.joinable()) retirer_.join();
  // What still waits to be stopped goes now, without its grace: the slots moved on.
  for (const std::string& container : retiring_) {
    absl::Status removed = RemoveContainer(container, 0);
    if (!removed.ok())
      LogWarn("deploy.retire_failed", {{"container", container}, {"status", removed}});
  }
}

void PodmanDeployTarget::Retire(const std::string& container, const DeployLogSink& log) {
  {
    absl::MutexLock lock(&retire_mu_);
    if (retiring_.size() < kMaxRetiring && !stopping_) {
      retiring_.push_back(container);
      if (log) log(absl::StrCat("[deploy] stopping ", container, " (in the background)"));
      return;
    }
  }
  // Too many waiting: this deploy waits for its own.
  absl::Status removed = RemoveContainer(container, options_.stop_timeout_seconds);
  if (log) {
    log(removed.ok()
            ? absl::StrCat("[deploy] removed ", container)
            : absl::StrCat("[deploy] could not remove ", container, ": ", removed.message()));
  }
}

void PodmanDeployTarget::RetireLoop() {
  for (;;) {
    std::string container;
    {
      absl::MutexLock lock(&retire_mu_);
      retire_mu_.Await(absl::Condition(
          +[](PodmanDeployTarget* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->retire_mu_) {
            return t->stopping_ || !t->retiring_.empty();
          },
          this));
      if (stopping_) return;
      container = retiring_.front();
      retiring_.pop_front();
    }
    absl::Status removed = RemoveContainer(container, options_.stop_timeout_seconds);
    if (!removed.ok()) {
      // The next target's Restore removes it (an older container of the same slot).
      LogWarn("deploy.retire_failed", {{"container", container}, {"status", removed}});
    }
  }
}

absl::StatusOr<std::unique_ptr<PodmanDeployTarget>> PodmanDeployTarget::Create(
    PodmanDeployOptions options, const DeployLogSink& log, const std::function<bool()>& cancelled) {
  if (options.state_dir.empty() || options.state_dir[0] != '/') {
    return absl::InvalidArgumentError("the state dir must be an absolute path");
  }
  if (options.stop_timeout_seconds < 0 || options.stop_timeout_seconds > 600) {
    return absl::InvalidArgumentError("stop timeout out of range");
  }
  builder::PodmanOptions podman_options;
  podman_options.volume = options.state_dir;
  podman_options.podman_binary = options.podman_binary;
  podman_options.isolate_commands = false;  // `run -d` containers must outlive podman.
  ASSIGN_OR_RETURN(std::unique_ptr<builder::Podman> podman,
                   builder::Podman::Create(podman_options, log, cancelled));
  ASSIGN_OR_RETURN(std::unique_ptr<PortProxy> proxy, PortProxy::Create(options.proxy));
  std::unique_ptr<PodmanDeployTarget> target(
      new PodmanDeployTarget(std::move(options), std::move(podman), std::move(proxy)));
  RETURN_IF_ERROR(target->Restore(log, cancelled));
  return target;
}

absl::StatusOr<std::vector<PodmanDeployTarget::Managed>> PodmanDeployTarget::ListManaged(
    const std::function<bool()>& cancelled) {
  static constexpr const char* kLabels[] = {"kiln.project", "kiln.slot",        "kiln.deployment",
                                            "kiln.image",   "kiln.public-port", "kiln.private-port",
                                            "kiln.created"};
  std::string format = "{{.Names}}\t{{.State}}";
  for (const char* label : kLabels) absl::StrAppend(&format, "\t{{index .Labels \"", label, "\"}}");
  std::vector<std::string> lines;
  ASSIGN_OR_RETURN(
      builder::CommandResult ps,
      podman_->Run(
          {"ps", "--all", "--filter", "label=kiln.managed=true", "--format", format},
          [&](std::string_view l) { lines.emplace_back(l); }, cancelled, options_.command_timeout));
  if (ps.exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("podman ps failed: ", ps.output_tail));
  }
  std::vector<Managed> found;
  for (const std::string& line : lines) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() != 9) continue;  // Not ours after all (a label missing): leave it alone.
    Managed m;
    m.name = f[0];
    m.state = f[1];
    m.slot.project = f[2];
    m.slot.slot = f[3];
    m.slot.deployment_id = f[4];
    m.slot.image = f[5];
    m.slot.container = f[0];
    if (!absl::SimpleAtoi(f[6], &m.slot.public_port) ||
        !absl::SimpleAtoi(f[7], &m.slot.private_port) || !absl::SimpleAtoi(f[8], &m.created_ns)) {
      continue;
    }
    found.push_back(std::move(m));
  }
  return found;
}

absl::Status PodmanDeployTarget::Restore(const DeployLogSink& log,
                                         const std::function<bool()>& cancelled) {
  auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  ASSIGN_OR_RETURN(std::vector<Managed> managed, ListManaged(cancelled));
  // Newest first: the first running container seen for a slot is the one to keep.
  std::sort(managed.begin(), managed.end(),
            [](const Managed& a, const Managed& b) { return a.created_ns > b.created_ns; });
  absl::MutexLock lock(&mu_);
  for (const Managed& m : managed) {
    std::string key = SlotKey(m.slot.project, m.slot.slot);
    // `podman ps` shows the state as people read it: "Up 5 seconds", "Exited (0) …", "Created".
    if (!absl::StartsWith(m.state, "Up")) {
      say(absl::StrCat("[deploy] removing ", m.state, " container ", m.name));
      RETURN_IF_ERROR(RemoveContainer(m.name, 0, cancelled));
      continue;
    }
    if (slots_.count(key) != 0) {
      say(absl::StrCat("[deploy] ", key, ": removing ", m.name, ", older than ",
                       slots_[key].container));
      RETURN_IF_ERROR(RemoveContainer(m.name, options_.stop_timeout_seconds, cancelled));
      continue;
    }
    absl::StatusOr<int> port = proxy_->Listen(m.slot.public_port, m.slot.private_port);
    if (!port.ok()) {
      // Unservable: another process holds the port. A new deploy brings the slot back.
      say(absl::StrCat("[deploy] ", key, ": cannot restore port ", m.slot.public_port, " (",
                       port.status().message(), "); removing ", m.name));
      RETURN_IF_ERROR(RemoveContainer(m.name, options_.stop_timeout_seconds, cancelled));
      continue;
    }
    say(absl::StrCat("[deploy] restored ", key, ": 127.0.0.1:", m.slot.public_port, " -> ", m.name,
                     " (port ", m.slot.private_port, ")"));
    slots_[key] = m.slot;
  }
  return absl::OkStatus();
}

absl::Status PodmanDeployTarget::RemoveContainer(const std::string& name, int stop_seconds,
                                                 const std::function<bool()>& cancelled) {
  if (stop_seconds == 0) {
    // Killed first: `rm --force` of a container left "Stopping" (a worker killed while it
    // stopped one) removes the container's record and leaves its process running.
    ASSIGN_OR_RETURN(
        builder::CommandResult killed,
        podman_->Run({"kill", "--signal", "KILL", name}, {}, cancelled, options_.command_timeout));
    (void)killed;  // Fails for a container that is not running: nothing to kill.
  }
  ASSIGN_OR_RETURN(
      builder::CommandResult rm,
      podman_->Run({"rm", "--force", "--ignore", "--time", absl::StrCat(stop_seconds), name}, {},
                   cancelled, options_.command_timeout + absl::Seconds(stop_seconds)));
  if (rm.exit_code != 0) {
    return absl::InternalError(absl::StrCat("podman rm ", name, " failed: ", rm.output_tail));
  }
  return absl::OkStatus();
}

void PodmanDeployTarget::TailLogs(const std::string& name, const DeployLogSink& log) {
  if (!log) return;
  absl::StatusOr<builder::CommandResult> logs = podman_->Run(
      {"logs", "--tail", absl::StrCat(kFailedLogLines), name},
      [&](std::string_view line) {
        log(absl::StrCat("[deploy] ", name, " | ", absl::string_view(line.data(), line.size())));
      },
      {}, options_.command_timeout);
  if (!logs.ok()) log(absl::StrCat("[deploy] no logs of ", name, ": ", logs.status().message()));
}

absl::StatusOr<bool> PodmanDeployTarget::Running(const std::string& name) {
  std::string out;
  ASSIGN_OR_RETURN(builder::CommandResult r,
                   podman_->Run(
                       {"inspect", "--format", "{{.State.Running}}", name},
                       [&](std::string_view l) { out.append(l); }, {}, options_.command_timeout));
  return r.exit_code == 0 && absl::StripAsciiWhitespace(out) == "true";
}

absl::Mutex* PodmanDeployTarget::SlotLock(const std::string& key) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<absl::Mutex>& m = slot_locks_[key];
  if (!m) m = std::make_unique<absl::Mutex>();
  return m.get();
}

absl::StatusOr<DeployResult> PodmanDeployTarget::Deploy(const DeployRequest& request,
                                                        const DeployLogSink& log,
                                                        const std::function<bool()>& cancelled) {
  RETURN_IF_ERROR(ValidateRequest(request));
  auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  auto is_cancelled = [&] { return cancelled && cancelled(); };
  const std::string key = SlotKey(request.project, request.slot);
  const std::string name = ContainerName(request);
  std::optional<Slot> current;
  {
    absl::MutexLock lock(&mu_);
    if (slots_.count(key) == 0 && slots_.size() >= kMaxSlots) {
      return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxSlots, " slots"));
    }
  }
  absl::MutexLock slot_lock(SlotLock(key));  // Deploys into one slot, one at a time.
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(key);
    if (it != slots_.end()) current = it->second;
  }
  DeployResult result;
  if (current && current->container == name && current->image == request.image &&
      (request.public_port == 0 || request.public_port == current->public_port)) {
    // A retried deploy of what already serves the slot: nothing to do.
    say(absl::StrCat("[deploy] ", key, " already serves ", name));
    result.container = name;
    result.public_port = current->public_port;
    result.private_port = current->private_port;
    result.url = absl::StrCat("http://127.0.0.1:", current->public_port, "/");
    return result;
  }
  if (current && current->container == name) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " serves the slot already with another image or port"));
  }

  // 1. Pull by digest.
  say(absl::StrCat("[deploy] pulling ", request.image));
  absl::Time t = absl::Now();
  ASSIGN_OR_RETURN(
      builder::CommandResult pull,
      podman_->Run({"pull", "--quiet", absl::StrCat("--tls-verify=", options_.registry_tls_verify),
                    request.image},
                   {}, cancelled, options_.pull_timeout));
  result.pull_duration = absl::Now() - t;
  if (pull.exit_code != 0) {
    say(absl::StrCat("[deploy] pull failed: ", pull.output_tail));
    return absl::UnavailableError(absl::StrCat("podman pull ", request.image, " failed (exit ",
                                               pull.exit_code, "): ", pull.output_tail));
  }
  say(absl::StrCat("[deploy] pulled in ", Ms(result.pull_duration)));
  if (is_cancelled()) return absl::CancelledError("deploy cancelled");

  // 2. The public port: the slot's, or one held now (closing what arrives until the switch), so
  // the labels can name it.
  int public_port = current ? current->public_port : 0;
  bool new_listener = false;
  if (!current || (request.public_port != 0 && request.public_port != current->public_port)) {
    ASSIGN_OR_RETURN(public_port, proxy_->Listen(request.public_port, 0));
    new_listener = true;
  }
  auto release_port = [&] {
    if (new_listener) proxy_->Close(public_port).IgnoreError();  // Ours; cannot be missing.
  };

  // 3. Run on a fresh private port.
  absl::StatusOr<int> private_port = FreePort();
  if (!private_port.ok()) {
    release_port();
    return private_port.status();
  }
  RETURN_IF_ERROR(RemoveContainer(name, 0));  // Left over by a crash during this same deploy.
  std::string env_file = absl::StrCat(options_.state_dir, "/podman/tmp/", name, ".env");
  {
    // Values (secrets, typically) go through a private file, never podman's command line.
    std::ofstream out(env_file, std::ios::trunc);
    fs::permissions(env_file, fs::perms::owner_read | fs::perms::owner_write);
    for (const auto& [k, v] : request.env) out << k << "=" << v << "\n";
    if (!out) {
      release_port();
      return absl::InternalError(absl::StrCat("cannot write ", env_file));
    }
  }
  std::vector<std::string> args = {"run",
                                   "-d",
                                   "--network=host",
                                   "--pull=never",
                                   "--name",
                                   name,
                                   "--log-opt",
                                   kLogMaxSize,
                                   "--env",
                                   absl::StrCat("PORT=", *private_port),
                                   "--env-file",
                                   env_file};
  int64_t created_ns = absl::ToUnixNanos(absl::Now());
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"kiln.managed", "true"},
           {"kiln.project", request.project},
           {"kiln.slot", request.slot},
           {"kiln.deployment", request.deployment_id},
           {"kiln.public-port", absl::StrCat(public_port)},
           {"kiln.private-port", absl::StrCat(*private_port)},
           {"kiln.image", request.image},
           {"kiln.created", absl::StrCat(created_ns)}}) {
    args.insert(args.end(), {"--label", absl::StrCat(k, "=", v)});
  }
  for (const std::string& u : podman_->profile().ulimits) args.insert(args.end(), {"--ulimit", u});
  args.push_back(request.image);
  say(absl::StrCat("[deploy] starting ", name, " on port ", *private_port));
  t = absl::Now();
  absl::StatusOr<builder::CommandResult> run =
      podman_->Run(args, {}, cancelled, options_.command_timeout);
  std::error_code ec;
  fs::remove(env_file, ec);
  result.start_duration = absl::Now() - t;
  if (!run.ok() || run->exit_code != 0) {
    absl::Status removed = RemoveContainer(name, 0);
    release_port();
    if (!removed.ok()) say(absl::StrCat("[deploy] ", removed.message()));
    if (!run.ok()) return run.status();
    say(absl::StrCat("[deploy] podman run failed: ", run->output_tail));
    return absl::UnavailableError(absl::StrCat("podman run ", name, " failed (exit ",
                                               run->exit_code, "): ", run->output_tail));
  }
  say(absl::StrCat("[deploy] started ", name, " in ", Ms(result.start_duration)));

  // 4. Health: GET <health_path> until 2xx.
  say(absl::StrCat("[deploy] waiting for GET http://127.0.0.1:", *private_port, request.health_path,
                   " to answer 2xx (at most ", Ms(request.health_timeout), ")"));
  t = absl::Now();
  absl::Time deadline = t + request.health_timeout;
  absl::Time next_liveness = t + kLivenessEvery;
  absl::Duration pause = kHealthFirstPause;
  std::string last = "no answer";
  absl::Status failure;
  for (;;) {
    if (is_cancelled()) {
      failure = absl::CancelledError("deploy cancelled");
      break;
    }
    absl::StatusOr<int> status = HttpStatus(*private_port, request.health_path);
    if (status.ok() && *status >= 200 && *status < 300) break;
    last = status.ok() ? absl::StrCat("HTTP ", *status) : std::string(status.status().message());
    absl::Time now = absl::Now();
    if (now >= deadline) {
      failure = absl::FailedPreconditionError(
          absl::StrCat(name, " not healthy after ", Ms(request.health_timeout), ": ", last));
      break;
    }
    if (now >= next_liveness) {
      next_liveness = now + kLivenessEvery;
      absl::StatusOr<bool> running = Running(name);
      if (running.ok() && !*running) {
        failure = absl::FailedPreconditionError(
            absl::StrCat(name, " exited before it was healthy (last probe: ", last, ")"));
        break;
      }
    }
    absl::SleepFor(std::min(pause, deadline - now));  // A poll interval, not a wait for luck.
    pause = std::min(pause * 2, kHealthMaxPause);
  }
  result.health_duration = absl::Now() - t;
  if (!failure.ok()) {
    say(absl::StrCat("[deploy] ", failure.message()));
    if (!absl::IsCancelled(failure)) TailLogs(name, log);
    absl::Status removed = RemoveContainer(name, 0);
    if (!removed.ok()) say(absl::StrCat("[deploy] ", removed.message()));
    release_port();
    if (current) {
      say(absl::StrCat("[deploy] ", key, " still serves ", current->container));
    }
    return failure;
  }
  say(absl::StrCat("[deploy] healthy after ", Ms(result.health_duration)));

  // 5. Switch: new connections go to the new container from here on.
  RETURN_IF_ERROR(proxy_->Retarget(public_port, *private_port));
  if (current && current->public_port != public_port) {
    proxy_->Close(current->public_port).IgnoreError();  // Held by this slot: cannot be missing.
  }
  Slot now;
  now.project = request.project;
  now.slot = request.slot;
  now.deployment_id = request.deployment_id;
  now.image = request.image;
  now.container = name;
  now.public_port = public_port;
  now.private_port = *private_port;
  {
    absl::MutexLock lock(&mu_);
    slots_[key] = now;
  }
  say(absl::StrCat("[deploy] 127.0.0.1:", public_port, " -> ", name));
  result.container = name;
  result.public_port = public_port;
  result.private_port = *private_port;
  result.url = absl::StrCat("http://127.0.0.1:", public_port, "/");

  // 6. The previous container goes (after the switch: it served until now).
  if (current) {
    result.previous_container = current->container;
    Retire(current->container, log);
  }
  return result;
}

absl::Status PodmanDeployTarget::StopSlot(const std::string& project, const std::string& slot) {
  const std::string key = SlotKey(project, slot);
  absl::MutexLock slot_lock(SlotLock(key));
  std::optional<Slot> current;
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(key);
    if (it == slots_.end()) return absl::OkStatus();
    current = it->second;
  }
  proxy_->Close(current->public_port).IgnoreError();  // Held by this slot.
  RETURN_IF_ERROR(RemoveContainer(current->container, options_.stop_timeout_seconds));
  absl::MutexLock lock(&mu_);
  slots_.erase(key);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SlotInfo>> PodmanDeployTarget::List(const std::string& project) {
  absl::MutexLock lock(&mu_);
  std::vector<SlotInfo> out;
  for (const auto& [key, s] : slots_) {
    if (!project.empty() && s.project != project) continue;
    SlotInfo info;
    info.project = s.project;
    info.slot = s.slot;
    info.deployment_id = s.deployment_id;
    info.image = s.image;
    info.container = s.container;
    info.public_port = s.public_port;
    info.url = absl::StrCat("http://127.0.0.1:", s.public_port, "/");
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace kiln::worker
