#include "builder-agent/agent.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

// The engine answers an empty long poll 1 s before the client's deadline. Polls are kept
// short enough that an empty queue is confirmed within the idle grace.
constexpr absl::Duration kMinPoll = absl::Seconds(2);
constexpr absl::Duration kMaxPoll = absl::Seconds(61);
constexpr absl::Duration kMaxIdleGrace = absl::Hours(1);
// A cancel is heard in a heartbeat's answer, so this bounds how long a superseded build runs
// on (plus the kill): StepLog's tick, so each of its heartbeats goes out. A heartbeat is one
// synced write in the orchestrator: five a second for the machine's one build.
constexpr absl::Duration kHeartbeatInterval = absl::Milliseconds(200);
// While idle and unanswered, how often the orchestrator's health is asked, and how long for.
constexpr absl::Duration kHealthInterval = absl::Seconds(5);
constexpr absl::Duration kHealthTimeout = absl::Seconds(2);

absl::Status ValidateProject(const std::string& project) {
  if (project.empty() || project.size() > kMaxProjectIdLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "project id must have 1 to ", kMaxProjectIdLength, " characters, got ", project.size()));
  }
  for (char c : project) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return absl::InvalidArgumentError(absl::StrCat(
          "project id '", project, "' may hold only letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

std::string Hostname() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

std::string ProjectTaskQueue(const std::string& project) { return "project/" + project; }

Agent::Agent(AgentOptions options)
    : options_(std::move(options)), task_queue_(ProjectTaskQueue(options_.project)) {}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(AgentOptions options,
                                                     const RegisterFn& register_activities) {
  RETURN_IF_ERROR(ValidateProject(options.project));
  if (options.volume.empty() || options.volume[0] != '/' ||
      options.volume.size() > kMaxVolumePathLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("the volume must be an absolute path of at most ", kMaxVolumePathLength,
                     " bytes, got '", options.volume, "'"));
  }
  if (options.orchestrator_lost_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError("the orchestrator-lost timeout must be at least 1 s");
  }
  if (options.idle_grace < absl::ZeroDuration() || options.idle_grace > kMaxIdleGrace) {
    return absl::InvalidArgumentError(
        absl::StrCat("idle grace must be within 0..", absl::FormatDuration(kMaxIdleGrace)));
  }
  if (options.identity.empty()) {
    options.identity =
        absl::StrCat("kiln-builder-agent/", options.project, "@", Hostname(), ":", options.volume);
  }
  std::error_code ec;
  std::filesystem::create_directories(options.volume, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the volume ", options.volume, ": ", ec.message()));
  }
  auto agent = std::unique_ptr<Agent>(new Agent(std::move(options)));
  const AgentOptions& o = agent->options_;

  // One agent per volume: two would share one git mirror and one container storage.
  const std::string lock_path = o.volume + "/agent.lock";
  agent->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (agent->lock_fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(agent->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    ssize_t n = ::pread(agent->lock_fd_, holder, sizeof(holder) - 1, 0);
    std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "unknown";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return absl::FailedPreconditionError(
        absl::StrCat("the volume ", o.volume, " is in use by another agent (pid ", pid, ")"));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  if (::ftruncate(agent->lock_fd_, 0) != 0 ||
      ::pwrite(agent->lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    LogWarn("agent.lock_pid_not_written", {{"path", lock_path}});
  }

  agent->registry_ = std::make_shared<prometheus::Registry>();
  if (!o.metrics_address.empty()) {
    ASSIGN_OR_RETURN(agent->metrics_, MetricsServer::Start(o.metrics_address, agent->registry_));
  }
  sdk::ConnectionOptions connection_options;
  connection_options.token = o.token;
  connection_options.tls = o.tls;
  connection_options.tls_root_certs = o.tls_root_certs;
  connection_options.tls_cert_chain = o.tls_cert_chain;
  connection_options.tls_private_key = o.tls_private_key;
  agent->connection_ = std::make_unique<sdk::Connection>(o.orchestrator, connection_options);
  agent->worker_ = std::make_unique<sdk::ActivityWorker>(
      *agent->connection_, agent->task_queue_,
      sdk::ActivityWorkerOptions{
          .identity = o.identity,
          .exclusive = true,
          .ns = o.ns,
          .max_concurrent = 1,
          .pollers = 1,
          .poll_timeout = std::clamp(o.idle_grace + absl::Seconds(1), kMinPoll, kMaxPoll),
          .max_heartbeat_interval = kHeartbeatInterval,
          .registry = agent->registry_.get(),
      });
  RETURN_IF_ERROR(register_activities(*agent->worker_, *agent));
  return agent;
}

Agent::~Agent() {
  Stop();
  worker_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // Releases the volume's lock.
}

absl::Status Agent::Run() {
  {
    absl::MutexLock lock(&mu_);
    if (running_) return absl::FailedPreconditionError("the agent is already running");
    running_ = true;
  }
  const AgentOptions& o = options_;
  absl::Status health = connection_->CheckHealth(o.connect_timeout);
  if (!health.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot reach the orchestrator at ", o.orchestrator,
                                               " within ", absl::FormatDuration(o.connect_timeout),
                                               ": ", health.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) return absl::OkStatus();
    RETURN_IF_ERROR(worker_->Start());
  }
  LogInfo("agent.serving", {{"queue", task_queue_},
                            {"identity", o.identity},
                            {"idle_grace", o.idle_grace},
                            {"volume", o.volume}});
  bool drained = false;
  absl::Status lost = absl::OkStatus();
  // While nothing runs and no poll is answered, the orchestrator is checked every
  // kHealthInterval; after orchestrator_lost_timeout without an answer the agent gives up,
  // so that the machine does not stay awake for an engine that is gone.
  const absl::Duration check_every = std::min(kHealthInterval, o.orchestrator_lost_timeout / 2);
  absl::Time unanswered_since = absl::InfiniteFuture();
  for (;;) {
    if (worker_->WaitForIdle(o.idle_grace, check_every)) {
      drained = true;
      break;
    }
    if (!worker_->fatal_error().ok() || StopRequested()) break;
    if (worker_->running() > 0 || worker_->IdleFor() > absl::ZeroDuration()) {
      unanswered_since = absl::InfiniteFuture();  // Working, or polls are being answered.
      continue;
    }
    absl::Status health = connection_->CheckHealth(kHealthTimeout);
    const absl::Time now = absl::Now();
    if (health.ok()) {
      unanswered_since = absl::InfiniteFuture();
      continue;
    }
    if (unanswered_since == absl::InfiniteFuture()) unanswered_since = now;
    if (now - unanswered_since >= o.orchestrator_lost_timeout) {
      lost = absl::UnavailableError(
          absl::StrCat("lost the orchestrator at ", o.orchestrator, ": no answer for ",
                       absl::FormatDuration(absl::Trunc(now - unanswered_since, absl::Seconds(1))),
                       " (", health.message(), ")"));
      break;
    }
  }
  absl::Status fatal = worker_->fatal_error();
  worker_->Stop();
  if (!lost.ok()) return lost;
  if (!fatal.ok()) {
    std::string message(fatal.message());
    if (absl::IsFailedPrecondition(fatal)) {
      return absl::FailedPreconditionError(
          absl::StrCat("refused: another agent serves ", task_queue_, ": ", message));
    }
    return absl::Status(fatal.code(),
                        absl::StrCat("the orchestrator at ", o.orchestrator, " refused to serve ",
                                     task_queue_, ": ", message));
  }
  LogInfo("agent.drained", {{"queue", task_queue_},
                            {"idle_grace", o.idle_grace},
                            {"tasks", worker_->tasks_started()},
                            {"stopped", !drained}});
  return absl::OkStatus();
}

bool Agent::StopRequested() {
  absl::MutexLock lock(&mu_);
  return stop_requested_;
}

void Agent::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_requested_ = true;
  }
  if (worker_) worker_->Stop();
}

}  // namespace kiln::builder
