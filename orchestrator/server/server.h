// The orchestrator process's wiring: opens the RocksDB store in the data directory, builds the
// engine's parts (history, matching, timers, watchers), and serves them over gRPC
// (WorkflowService, health) and Prometheus /metrics.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/server_calls.h"

namespace kiln {
class ConnectionListener;
}  // namespace kiln

namespace kiln::orchestrator {

class Store;
class Matching;
class HistoryEngine;
class TimerQueue;
class RunWatchers;
class WorkflowHandler;
class LogHandler;
class Listener;
class Authorizer;
class RevokedTokens;
class ServerHealth;
class TemporalFrontend;

struct ServerOptions {
  // Holds the auth key, the admin token and, unless `store` names another, the RocksDB store.
  std::string data_dir;
  // Empty: RocksDB in <data_dir>/db. A "postgres://…" or "postgresql://…" URI: a PostgresStore
  // on that database (orchestrator/persistence/postgres_store.h).
  std::string store;
  std::string listen = "127.0.0.1:7233";
  // Empty: no metrics endpoint.
  std::string metrics_listen = "127.0.0.1:9233";
  // Engine work runs on engine_fibers fibers over engine_threads threads (0: one per core).
  // Waiting for a run's lock or for a synced commit parks a fiber, not a thread; concurrent
  // commits share one fsync, so enough fibers make large groups. Against 32 threads (the old
  // default, still there with engine_fibers = 0), 64 fibers on 2 threads cut context switches
  // per commit from ~3 to ~2 and raised (b) of the engine benchmark by ~9%; (a) stayed level.
  int engine_threads = 0;
  int engine_fibers = 64;
  size_t engine_queue = 20'000;
  absl::Duration long_poll = absl::Seconds(60);
  // How long an exclusive queue's lease outlives its holder's last poll.
  absl::Duration exclusive_lease = absl::Seconds(10);
  // Closed runs are deleted this long after they close.
  absl::Duration retention = absl::Hours(72);
  // A task created while a poller waits on its queue is started in the creating transition
  // (one synced write instead of two). Off only to measure what it saves.
  bool start_at_schedule = true;
  // Such a task, if a workflow task, goes to its poller while the commit syncs
  // (EngineOptions::workflow_tasks_before_sync).
  bool workflow_tasks_before_sync = true;
  // EngineOptions::quiet_commits_on_caller.
  bool quiet_commits_on_caller = true;
  // EngineOptions::hold_for_answer (zero: never held).
  absl::Duration hold_for_answer = absl::Microseconds(1000);
  // The key that verifies callers' tokens (common/auth/token.h); empty: <data_dir>/auth.key.
  // Created (mode 0600) when missing, with the local admin credential <data_dir>/admin.token.
  std::string auth_key_file;
  // Let calls without a token do everything, as before tokens existed (--insecure-allow-anonymous;
  // see authorizer.h). Off by default: every caller presents a token.
  bool allow_anonymous = false;
  // TLS on the gRPC listener (PEM files): certificate chain and key; with tls_client_ca_file,
  // clients must present a certificate it signed (mutual TLS). All empty: plain gRPC.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Writes stop (UNAVAILABLE, reads go on) while the data directory's filesystem has less free;
  // 0: only a failed write stops them (RocksDbOptions::min_free_bytes).
  uint64_t min_free_disk_bytes = 64 << 20;
  // Open gRPC connections at most (one more is accepted and closed); 0: the open-file limit
  // less a reserve for the store and everything else (connection_listener.h).
  int max_connections = 0;
  // How often the listener checks that it accepts (health "" turns NOT_SERVING when not).
  absl::Duration listener_probe_interval = absl::Seconds(5);
  // host:port of Temporal's API (orchestrator/temporal/temporal_frontend.h), with the same TLS
  // as `listen`; empty: not served.
  std::string temporal_listen;
  // The engine namespaces Temporal's API serves (DescribeNamespace answers them; a call naming
  // any other is NOT_FOUND).
  std::vector<std::string> temporal_namespaces = {"default"};
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  int port() const { return port_; }
  // The Temporal API's port; 0 when not served.
  int temporal_port() const;
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

  // Answers waiting polls, stops taking calls, lets running ones finish for up to `grace`.
  void Shutdown(absl::Duration grace);

 private:
  Server();

  ServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<ServerHealth> health_;
  RealClock clock_;
  RandomIdGenerator ids_;
  // The store the engine writes: RocksDB in data_dir, or PostgreSQL (ServerOptions::store).
  std::unique_ptr<Store> base_store_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<RunWatchers> watchers_;
  std::unique_ptr<Matching> matching_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<HistoryEngine> engine_;
  std::unique_ptr<TimerQueue> timers_;
  std::unique_ptr<TimerQueue> retention_;
  std::unique_ptr<RevokedTokens> revoked_tokens_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<WorkflowHandler> workflow_service_;
  std::unique_ptr<LogHandler> log_service_;
  std::unique_ptr<ConnectionListener> connections_;
  ServerCalls grpc_calls_;  // Outlives grpc_server_.
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<TemporalFrontend> temporal_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace kiln::orchestrator
