#include "orchestrator/server/server.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <thread>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>
#include <prometheus/gauge.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/auth/token.h"
#include "common/config.h"
#include "common/connection_listener.h"
#include "common/logging.h"
#include "common/open_files.h"
#include "common/rpc_parse_errors.h"
#include "common/server_calls.h"
#include "common/status.h"
#include "common/tls.h"
#include "common/version.h"
#include "orchestrator/frontend/workflow_handler.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/run_watchers.h"
#include "orchestrator/logservice/log_handler.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/persistence/metered_store.h"
#include "orchestrator/persistence/postgres_store.h"
#include "orchestrator/persistence/rocksdb_store.h"
#include "orchestrator/rpc/authorizer.h"
#include "orchestrator/rpc/revoked_tokens.h"
#include "orchestrator/server/local_auth.h"
#include "orchestrator/server/server_health.h"
#include "orchestrator/temporal/temporal_frontend.h"
#include "orchestrator/timers/timer_queue.h"

namespace kiln::orchestrator {

// Carries each committed transition's effects to the queues and to waiting readers.
class Listener final : public EngineListener {
 public:
  Listener(Matching* matching, RunWatchers* watchers) : matching_(matching), watchers_(watchers) {}
  void set_timers(TimerQueue* timers, TimerQueue* retention) {
    timers_ = timers;
    retention_ = retention;
  }

  void TaskAdded(QueuedTask task) override { matching_->TaskAdded(std::move(task)); }
  void TimerAdded(Table table, const std::string& key, absl::Time fire_time) override {
    TimerQueue* queue = table == Table::kRetention ? retention_ : timers_;
    if (queue != nullptr) queue->TimerAdded(key, fire_time);
  }
  void TimerRemoved(const std::string& key) override {
    if (timers_ != nullptr) timers_->TimerRemoved(key);
  }
  void RunChanged(const std::string& run_id, bool closed,
                  const api::HistoryEvent* close_event) override {
    watchers_->Notify(run_id, closed, close_event);
  }
  std::optional<TaskReservation> ReservePoller(const QueuedTask& task) override {
    if (!start_at_schedule_) return std::nullopt;
    return matching_->Reserve(task.kind, task.ns, task.queue, task.preferred_worker_instance);
  }
  void FulfilReservation(const TaskReservation& reservation, QueuedTask task) override {
    matching_->Fulfil(reservation, std::move(task));
  }
  void ReleaseReservation(const TaskReservation& reservation) override {
    matching_->Release(reservation);
  }
  void set_start_at_schedule(bool on) { start_at_schedule_ = on; }

 private:
  Matching* matching_;
  RunWatchers* watchers_;
  TimerQueue* timers_ = nullptr;
  TimerQueue* retention_ = nullptr;
  bool start_at_schedule_ = true;
};

namespace {
int EngineThreads(const ServerOptions& options) {
  if (options.engine_threads > 0) return options.engine_threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}
}  // namespace

Server::Server() = default;

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: must be set");
  ASSIGN_OR_RETURN(HostPort listen, ParseHostPort(options.listen, "--listen"));
  RETURN_IF_ERROR(PrepareDataDir(options.data_dir));
  // The key first: it signs task tokens as well as verifying callers.
  ASSIGN_OR_RETURN(LocalAuth local_auth, SetUpLocalAuth(options.data_dir, options.auth_key_file));

  std::unique_ptr<Server> server(new Server());
  server->options_ = options;
  server->registry_ = std::make_shared<prometheus::Registry>();
  ASSIGN_OR_RETURN(server->metrics_,
                   MetricsServer::Start(options.metrics_listen, server->registry_));

  server->health_ = std::make_unique<ServerHealth>(*server->registry_);
  auto on_health_change = [health = server->health_.get()](const StoreHealth& h) {
    health->StoreChanged(h);
  };
  if (absl::StartsWith(options.store, "postgres://") ||
      absl::StartsWith(options.store, "postgresql://")) {
    PostgresStoreOptions store_options;
    store_options.on_health_change = on_health_change;
    // The store's claim on the database: a second orchestrator started on it takes it over and
    // this one stops writing (docs/postgres-store.md, "The fence").
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
    store_options.owner = absl::StrCat(host, ":", ::getpid());
    ASSIGN_OR_RETURN(server->base_store_, PostgresStore::Open(options.store, store_options));
  } else if (options.store.empty()) {
    RocksDbOptions store_options;
    store_options.min_free_bytes = options.min_free_disk_bytes;
    store_options.on_health_change = on_health_change;
    store_options.registry = server->registry_.get();
    ASSIGN_OR_RETURN(server->base_store_,
                     RocksDbStore::Open(options.data_dir + "/db", store_options));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store: expected a postgres:// or postgresql:// URI (or nothing for RocksDB in "
        "--data-dir), got \"",
        options.store, "\""));
  }
  if (StoreHealth store = server->base_store_->Health(); !store.writable) {
    // Started on a full disk: serving reads beats a crash loop under a supervisor.
    LogWarn("orchestrator.read_only", {{"reason", store.reason}, {"data_dir", options.data_dir}});
    server->health_->StoreChanged(store);
  }
  server->store_ =
      std::make_unique<MeteredStore>(*server->base_store_, *server->registry_, server->clock_);
  server->executor_ =
      std::make_unique<Executor>("engine", EngineThreads(options), options.engine_queue,
                                 options.engine_fibers, server->registry_.get());
  prometheus::Gauge* history_waits = &prometheus::BuildGauge()
                                          .Name("kiln_history_waits")
                                          .Help(
                                              "History reads waiting for a run to change "
                                              "(clients waiting for a result)")
                                          .Register(*server->registry_)
                                          .Add({});
  server->watchers_ = std::make_unique<RunWatchers>(
      50'000, [history_waits](size_t n) { history_waits->Set(static_cast<double>(n)); });
  MatchingOptions matching_options;
  matching_options.exclusive_lease = options.exclusive_lease;
  server->matching_ = std::make_unique<Matching>(server->store_.get(), &server->clock_,
                                                 server->registry_.get(), matching_options);
  server->listener_ = std::make_unique<Listener>(server->matching_.get(), server->watchers_.get());
  ASSIGN_OR_RETURN(
      server->engine_,
      HistoryEngine::Create(
          server->store_.get(), &server->clock_, &server->ids_, server->listener_.get(),
          EngineOptions{.retention = options.retention,
                        .task_token_key = local_auth.key,
                        .workflow_tasks_before_sync = options.workflow_tasks_before_sync,
                        .quiet_commits_on_caller = options.quiet_commits_on_caller,
                        .hold_for_answer = options.hold_for_answer,
                        .registry = server->registry_.get()}));
  HistoryEngine* engine = server->engine_.get();
  server->timers_ = std::make_unique<TimerQueue>(
      server->store_.get(), &server->clock_, server->executor_.get(),
      [engine](const std::string& key, const internal::TimerTask& task) {
        return engine->FireTimer(key, task);
      },
      server->registry_.get());
  // Closed runs' deletions, days ahead, in a table of their own (see keys.h).
  server->retention_ = std::make_unique<TimerQueue>(
      server->store_.get(), &server->clock_, server->executor_.get(),
      [engine](const std::string& key, const internal::TimerTask& task) {
        return engine->FireRetention(key, task);
      },
      server->registry_.get(), TimerQueueOptions{.table = Table::kRetention, .name = "retention"});
  server->listener_->set_timers(server->timers_.get(), server->retention_.get());
  server->listener_->set_start_at_schedule(options.start_at_schedule);
  RETURN_IF_ERROR(server->timers_->Start());
  RETURN_IF_ERROR(server->retention_->Start());

  ASSIGN_OR_RETURN(server->revoked_tokens_,
                   RevokedTokens::Load(server->store_.get(), &server->clock_));
  server->authorizer_ = std::make_unique<Authorizer>(
      std::move(local_auth.key), &server->clock_, engine, server->registry_.get(),
      AuthOptions{.require_auth = !options.allow_anonymous}, server->revoked_tokens_.get());
  LogInfo("orchestrator.auth", {{"key_file", local_auth.key_file},
                                {"admin_token_file", local_auth.admin_token_file},
                                {"allow_anonymous", options.allow_anonymous},
                                {"revoked_tokens", server->revoked_tokens_->size()}});

  FrontendDeps deps{engine,
                    server->matching_.get(),
                    server->watchers_.get(),
                    &server->clock_,
                    &server->ids_,
                    server->executor_.get(),
                    server->registry_.get(),
                    options.data_dir,
                    options.long_poll,
                    server->authorizer_.get()};
  deps.store = server->store_.get();
  server->workflow_service_ = std::make_unique<WorkflowHandler>(std::move(deps));
  server->log_service_ = std::make_unique<LogHandler>(
      LogDeps{server->store_.get(), &server->clock_, server->executor_.get(),
              server->registry_.get(), engine->default_namespace(), server->authorizer_.get()});

  // The reserve covers RocksDB's table files (max_open_files 256), its WAL, logs and manifest,
  // the metrics endpoint, the executor.
  const int max_connections =
      options.max_connections > 0 ? options.max_connections : DefaultMaxConnections();
  ASSIGN_OR_RETURN(
      server->connections_,
      ConnectionListener::Bind({.host = listen.host,
                                .port = listen.port,
                                .max_connections = max_connections,
                                .probe_interval = options.listener_probe_interval,
                                .on_accepting = [health = server->health_.get()](bool accepting) {
                                  health->ListenerChanged(accepting);
                                }}));
  server->port_ = server->connections_->port();

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  RateLimitProtobufLogs();
  server->grpc_calls_.Install(builder);
  ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> credentials,
      ListenerCredentials(options.tls_cert_file, options.tls_key_file, options.tls_client_ca_file));
  // Connections come from our listener (connection_listener.h says why), not gRPC's own; TLS
  // (when configured) is done by gRPC on each connection it is handed.
  auto acceptor = builder.experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, credentials);
  builder.RegisterService(server->workflow_service_.get());
  builder.RegisterService(server->log_service_.get());
  builder.SetMaxReceiveMessageSize(8 << 20);
  server->grpc_server_ = builder.BuildAndStart();
  if (!server->grpc_server_) return absl::InternalError("the gRPC server did not start");
  server->connections_->StartGrpc(std::move(acceptor));
  server->health_->Attach(server->grpc_server_->GetHealthCheckService());
  WarnIfExposedWithoutTls("kiln-orchestrator", "the gRPC listener (--listen)", listen.host,
                          !options.tls_cert_file.empty());
  if (!options.temporal_listen.empty()) {
    ASSIGN_OR_RETURN(HostPort temporal,
                     ParseHostPort(options.temporal_listen, "--temporal-listen"));
    // Temporal's API calls this server's own WorkflowService handler directly.
    ASSIGN_OR_RETURN(
        server->temporal_,
        TemporalFrontend::Start(TemporalFrontendOptions{.listen = options.temporal_listen,
                                                        .credentials = credentials,
                                                        .namespaces = options.temporal_namespaces,
                                                        .retention = options.retention,
                                                        .server_version = kVersion},
                                server->workflow_service_.get()));
    WarnIfExposedWithoutTls("kiln-orchestrator", "Temporal's API (--temporal-listen)",
                            temporal.host, !options.tls_cert_file.empty());
  }
  LogInfo("orchestrator.serving", {{"listen", absl::StrCat(listen.host, ":", server->port_)},
                                   {"metrics_port", server->metrics_port()},
                                   {"temporal_port", server->temporal_port()},
                                   {"data_dir", options.data_dir},
                                   {"max_connections", max_connections},
                                   {"store", options.store.empty() ? "rocksdb" : "postgres"},
                                   {"writable", server->base_store_->Health().writable}});
  return server;
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

int Server::temporal_port() const { return temporal_ ? temporal_->port() : 0; }

void Server::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // Waiting calls answer now (empty), so the server can drain.
  if (matching_) matching_->Shutdown();
  if (watchers_) watchers_->Shutdown();
  if (log_service_) log_service_->Shutdown();  // Log follows end (UNAVAILABLE: resume).
  if (connections_) connections_->Stop();      // No new connections.
  // The store may still report (from its threads) until it closes, after the gRPC server.
  if (health_) health_->Detach();
  // Its calls wait on the engine's, which end now that matching has shut down.
  if (temporal_) temporal_->Shutdown(grace);
  if (grpc_server_) grpc_calls_.Shutdown(*grpc_server_, grace);
  if (timers_) timers_->Stop();
  if (retention_) retention_->Stop();
  executor_.reset();  // Runs what is queued, then joins.
}

}  // namespace kiln::orchestrator
