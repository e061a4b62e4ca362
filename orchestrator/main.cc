// kiln-orchestrator: the durable workflow engine. Parses flags and wires; see server/.
#include <malloc.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#ifdef KILN_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "common/config.h"
#include "common/logging.h"
#include "common/open_files.h"
#include "common/signals.h"
#include "orchestrator/persistence/postgres_store.h"
#include "orchestrator/server/server.h"
#include "orchestrator/server/token_command.h"

namespace {
// The allocator in use, for the startup log: jemalloc where the build links it
// (orchestrator/CMakeLists.txt says why), else glibc's.
std::string Allocator() {
#ifdef KILN_JEMALLOC
  const char* version = nullptr;
  size_t size = sizeof(version);
  if (mallctl("version", &version, &size, nullptr, 0) == 0 && version != nullptr) {
    return std::string("jemalloc ") + version;
  }
  return "jemalloc";
#else
  return "glibc";
#endif
}
// `kiln-orchestrator migrate --store postgres://…`: 0 when the schema is this version's (created
// or already there), 1 when it cannot be (unreachable, newer), 2 without a PostgreSQL --store.
int Migrate(const std::string& store) {
  if (store.empty()) {
    std::cerr << "migrate: --store postgres://… is required (RocksDB needs no migration)\n";
    return 2;
  }
  absl::StatusOr<int> found = kiln::orchestrator::PostgresStore::Migrate(store);
  if (!found.ok()) {
    std::cerr << "migrate: " << found.status().message() << "\n";
    return 1;
  }
  const int version = kiln::orchestrator::PostgresStore::kSchemaVersion;
  if (*found == 0) {
    std::cout << "created the kiln schema, version " << version << "\n";
  } else {
    std::cout << "the kiln schema is at version " << version << " already\n";
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
#ifndef KILN_JEMALLOC
  // glibc gives each thread that allocates its own malloc arena (up to 8 per core): with many
  // threads freed memory stays spread over many arenas. Two arenas took peak RSS in the engine
  // benchmark from 135 to 100 MiB with no measurable loss (with 32 engine threads). An
  // explicit MALLOC_ARENA_MAX in the environment wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
#endif
  // Nothing the orchestrator writes (store, key, credential, logs it creates) is for others.
  ::umask(077);
  kiln::BlockTerminationSignals();
  CLI::App app{"kiln-orchestrator: Kiln's durable workflow engine (history, matching, timers)",
               "kiln-orchestrator"};
  kiln::CommonFlags common;
  kiln::AddCommonFlags(app, &common);
  kiln::orchestrator::ServerOptions options;
  options.data_dir = "kiln-data";
  app.add_option("--data-dir", options.data_dir,
                 "Directory holding the RocksDB store (unless --store), the auth key and the "
                 "admin token")
      ->envname("KILN_DATA_DIR")
      ->capture_default_str();
  app.add_option("--store", options.store,
                 "Store on PostgreSQL instead of RocksDB: a libpq URI "
                 "(postgres://user@host:port/database?…; a password comes best from PGPASSFILE)")
      ->envname("KILN_STORE")
      ->check(CLI::Validator(
          [](const std::string& value) -> std::string {
            if (value.rfind("postgres://", 0) == 0 || value.rfind("postgresql://", 0) == 0) {
              return "";
            }
            return "expected a postgres:// or postgresql:// URI, got " + value;
          },
          "URI"));
  app.add_option("--listen", options.listen, "gRPC address (host:port, port 0 picks one)")
      ->envname("KILN_LISTEN")
      ->check(kiln::HostPortValidator())
      ->capture_default_str();
  app.add_option("--metrics", options.metrics_listen,
                 "Prometheus /metrics address (host:port; empty disables)")
      ->envname("KILN_METRICS")
      ->capture_default_str();
  double exclusive_lease_s = 10;
  app.add_option("--exclusive-lease", exclusive_lease_s,
                 "Seconds an exclusive task queue stays held after its holder's last poll")
      ->envname("KILN_EXCLUSIVE_LEASE")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  double retention_h = 72;
  app.add_option("--retention-hours", retention_h,
                 "Hours a closed workflow run (state, history, logs) is kept before deletion")
      ->envname("KILN_RETENTION_HOURS")
      ->check(CLI::Range(0.001, 24.0 * 3650))
      ->capture_default_str();
  app.add_option("--start-at-schedule", options.start_at_schedule,
                 "Start a task in the transition that creates it when a poller waits (false only "
                 "to measure what that saves)")
      ->envname("KILN_START_AT_SCHEDULE")
      ->capture_default_str();
  app.add_option("--workflow-tasks-before-sync", options.workflow_tasks_before_sync,
                 "Send a workflow task started at schedule to its worker while its commit syncs, "
                 "when commits are few (false: after the sync; see docs/fast-paths.md)")
      ->envname("KILN_WORKFLOW_TASKS_BEFORE_SYNC")
      ->capture_default_str();
  app.add_option("--quiet-commits-on-caller", options.quiet_commits_on_caller,
                 "When commits are few, the engine thread of a transition with nothing to do "
                 "meanwhile writes and syncs its commit itself instead of waking the store's "
                 "writer (false: always the writer; see docs/fast-paths.md)")
      ->envname("KILN_QUIET_COMMITS_ON_CALLER")
      ->capture_default_str();
  int hold_for_answer_us = 1000;
  app.add_option(
         "--hold-for-answer-us", hold_for_answer_us,
         "When commits are few, a start, an activity's answer or a timer whose workflow task goes "
         "out before its commit holds the commit up to this many microseconds for the "
         "task's answer, so that one fsync commits both (0: never; see "
         "docs/fast-paths.md)")
      ->envname("KILN_HOLD_FOR_ANSWER_US")
      ->check(CLI::Range(0, 100'000))
      ->capture_default_str();
  app.add_option("--engine-threads", options.engine_threads,
                 "Threads running engine work (0: one per core); with --engine-fibers=0 each holds "
                 "one request through its synced commit (32 suit 2 cores)")
      ->envname("KILN_ENGINE_THREADS")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_option("--engine-fibers", options.engine_fibers,
                 "Fibers running engine work over --engine-threads threads: a request waiting "
                 "for its commit parks its fiber; concurrent commits share one fsync (0: none)")
      ->envname("KILN_ENGINE_FIBERS")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--auth-key-file", options.auth_key_file,
                 "File holding the key that verifies callers' tokens (created, mode 0600, when "
                 "missing; default <data-dir>/auth.key)")
      ->envname("KILN_AUTH_KEY_FILE");
  app.add_flag("--insecure-allow-anonymous", options.allow_anonymous,
               "Let calls without a token do everything (tokens are required by default; the "
               "local admin credential is <data-dir>/admin.token)")
      ->envname("KILN_INSECURE_ALLOW_ANONYMOUS");
  app.add_option("--tls-cert", options.tls_cert_file,
                 "PEM certificate chain: serve gRPC over TLS (with --tls-key)")
      ->envname("KILN_TLS_CERT");
  app.add_option("--tls-key", options.tls_key_file, "PEM private key of --tls-cert")
      ->envname("KILN_TLS_KEY");
  app.add_option("--tls-client-ca", options.tls_client_ca_file,
                 "PEM CA: require clients to present a certificate it signed (mutual TLS)")
      ->envname("KILN_TLS_CLIENT_CA");
  uint64_t min_free_disk_mb = options.min_free_disk_bytes >> 20;
  app.add_option("--min-free-disk-mb", min_free_disk_mb,
                 "Writes stop (UNAVAILABLE; reads go on) while the data directory's filesystem "
                 "has less free than this, and resume by themselves above it (0: only a failed "
                 "write stops them)")
      ->envname("KILN_MIN_FREE_DISK_MB")
      ->capture_default_str();
  app.add_option("--max-connections", options.max_connections,
                 "Open gRPC connections at most; one more is accepted and closed at once (0: the "
                 "open-file limit less a reserve of min(512, limit/2))")
      ->envname("KILN_MAX_CONNECTIONS")
      ->check(CLI::Range(0, 10'000'000))
      ->capture_default_str();
  double listener_probe_s = 5;
  app.add_option("--listener-probe-interval", listener_probe_s,
                 "Seconds between the listener's self-checks (a connection to its own address); "
                 "health turns NOT_SERVING while it cannot accept")
      ->envname("KILN_LISTENER_PROBE_INTERVAL")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  app.add_option(
         "--temporal-listen", options.temporal_listen,
         "Also serve Temporal's API (temporal.api.workflowservice.v1.WorkflowService) here, "
         "host:port, so Temporal's SDKs run on Kiln (docs/temporal-api.md); empty: not "
         "served")
      ->envname("KILN_TEMPORAL_LISTEN")
      ->check(kiln::HostPortValidator());
  app.add_option("--temporal-namespaces", options.temporal_namespaces,
                 "The namespaces Temporal's API serves, comma-separated (each is the engine "
                 "namespace of that name; DescribeNamespace answers them, any other is NOT_FOUND)")
      ->envname("KILN_TEMPORAL_NAMESPACES")
      ->delimiter(',')
      ->check(CLI::Validator(
          [](const std::string& name) {
            return name.empty() || name.size() > 1000 ? std::string("1 to 1000 bytes each")
                                                      : std::string();
          },
          "NAME"))
      ->capture_default_str();
  kiln::orchestrator::TokenCommand token_command(app);
  CLI::App* migrate = app.add_subcommand(
      "migrate",
      "Create the schema of the PostgreSQL store named by --store, or upgrade it to this "
      "version's, and exit (the server also creates it on start, and refuses a newer one)");
  migrate->fallthrough();
  if (int code = kiln::ParseFlags(app, argc, argv); code >= 0) return code;
  if (token_command.parsed()) return token_command.Run(options, std::cout, std::cerr);
  if (migrate->parsed()) return Migrate(options.store);
  options.retention = absl::Seconds(retention_h * 3600);
  options.hold_for_answer = absl::Microseconds(hold_for_answer_us);
  options.exclusive_lease = absl::Seconds(exclusive_lease_s);
  options.min_free_disk_bytes = min_free_disk_mb << 20;
  options.listener_probe_interval = absl::Seconds(listener_probe_s);
  kiln::ApplyCommonFlags(common);

  kiln::LogInfo("orchestrator.allocator", {{"allocator", Allocator()}});
  // Every connection takes a descriptor; the default --max-connections follows this limit.
  kiln::RaiseOpenFileLimitAndLog("orchestrator");
  auto server = kiln::orchestrator::Server::Start(options);
  if (!server.ok()) {
    kiln::LogError("orchestrator.start_failed", {{"status", server.status()}});
    return 1;
  }
  int signo = kiln::WaitForTerminationSignal();
  kiln::LogInfo("orchestrator.stopping", {{"signal", signo}});
  (*server)->Shutdown(absl::Seconds(5));
  kiln::LogInfo("orchestrator.stopped");
  return 0;
}
