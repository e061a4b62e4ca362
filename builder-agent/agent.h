// The builder agent's loop: inside a project's builder machine it serves the project's task
// queue, project/<id>, alone (an exclusive poll: the orchestrator refuses other identities
// while this one holds the queue), one activity at a time (the volume is one build cache),
// and returns once the queue has stayed empty for the idle grace so that the machine can
// sleep. What it serves is registered by the caller (see activities.h); this file knows only
// the lifecycle:
//
//   Create      takes <volume>/agent.lock (one agent per volume) and sets up the connection
//               (the token goes as "authorization: Bearer <token>" metadata), metrics and
//               the activity worker;
//   Run         checks the orchestrator's health within connect_timeout, serves the queue and
//               returns OK once drained, or an error saying why it could not serve: the
//               orchestrator unreachable (kUnavailable / kDeadlineExceeded), the queue held
//               by another agent (kFailedPrecondition, naming it), credentials refused, or
//               the orchestrator gone for orchestrator_lost_timeout while idle (kUnavailable);
//   Stop        (another thread, e.g. on SIGTERM) ends Run early; a running activity is
//               cancelled and reported as a retryable failure, so another attempt redoes it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "sdk/activity_worker.h"
#include "sdk/connection.h"

namespace kiln::builder {

inline constexpr size_t kMaxProjectIdLength = 128;
// Keeps the default identity within the orchestrator's 1000-byte limit.
inline constexpr size_t kMaxVolumePathLength = 512;

struct AgentOptions {
  std::string orchestrator = "127.0.0.1:7233";
  std::string project;
  // The machine's persistent volume: git mirrors, container storage, caches.
  std::string volume;
  // Sent to the orchestrator as a bearer token (empty: none).
  std::string token;
  // Speak TLS to the orchestrator, verifying its certificate with this PEM CA (empty: the
  // system's roots).
  bool tls = false;
  std::string tls_root_certs;
  // Mutual TLS: the client certificate chain and its key presented to the orchestrator (PEM
  // contents; empty: none).
  std::string tls_cert_chain;
  std::string tls_private_key;
  std::string ns;
  // Empty: "kiln-builder-agent/<project>@<hostname>:<volume>", stable across restarts of the
  // agent on one machine and volume, so that an agent woken again soon after the last one
  // exited takes the queue back at once instead of waiting for the old lease to lapse, while
  // an agent of the same project elsewhere (another machine or volume) is refused.
  std::string identity;
  absl::Duration idle_grace = absl::Seconds(3);
  absl::Duration connect_timeout = absl::Seconds(10);
  // Run gives up (kUnavailable) when, while idle, the orchestrator has answered neither polls
  // nor health checks for this long.
  absl::Duration orchestrator_lost_timeout = absl::Seconds(60);
  // host:port for /metrics; empty: not served.
  std::string metrics_address;
};

// The task queue of a project's builder agent.
std::string ProjectTaskQueue(const std::string& project);

class Agent {
 public:
  using RegisterFn = std::function<absl::Status(sdk::ActivityWorker& worker, Agent& agent)>;

  // kInvalidArgument for a bad project id or volume; kFailedPrecondition when another agent
  // holds the volume's lock (names its pid). `register_activities` registers what the agent
  // serves; it may keep references to the agent's connection and registry.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(AgentOptions options,
                                                       const RegisterFn& register_activities);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  absl::Status Run();
  // Thread-safe; idempotent.
  void Stop();

  const AgentOptions& options() const { return options_; }
  const std::string& task_queue() const { return task_queue_; }
  sdk::Connection& connection() { return *connection_; }
  prometheus::Registry& registry() { return *registry_; }
  // The port /metrics is served on (0 when not served).
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

 private:
  explicit Agent(AgentOptions options);
  bool StopRequested();

  AgentOptions options_;
  std::string task_queue_;
  int lock_fd_ = -1;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<sdk::Connection> connection_;
  std::unique_ptr<sdk::ActivityWorker> worker_;
  absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kiln::builder
