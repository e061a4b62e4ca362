// A PostgreSQL cluster of a test's own: initdb into a temp dir, the server on a free 127.0.0.1
// port with its unix socket in that dir, stopped (by pg_ctl, else by the postmaster's PID) when
// the object goes. PostgreSQL refuses to run as root: as root the cluster belongs to the
// `postgres` system user (Debian's postgresql package creates it); without such a user, Start
// says so and the caller skips. Authentication is `trust` for the superuser `kiln`, reachable
// only over loopback and the private socket.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {

class PostgresCluster {
 public:
  // initdb and start. kFailedPrecondition when PostgreSQL is not installed or cannot run here
  // (the message says why: tests skip with it); other errors carry the tool's output. Not
  // `durable`: fsync off (a cluster whose own crash no test makes, shared by tests that make
  // a database each: CREATE DATABASE copies and syncs ~7 MB).
  static absl::StatusOr<std::unique_ptr<PostgresCluster>> Start(bool durable = true);
  // Stops the server immediately (nothing to keep) and removes the directory.
  ~PostgresCluster();
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  int port() const { return port_; }
  // libpq connection string for `database` on this cluster.
  std::string ConnInfo(const std::string& database = "postgres") const;
  // Creates an empty database and returns its connection string.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);

  // Stops the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint, the WAL
  // replays at the next start), or cleanly (`-m fast`).
  absl::Status Kill();
  absl::Status Stop();
  // Starts it again on the same port and data, returning once it accepts connections.
  absl::Status Restart();
  // The server log, for failure messages.
  std::string Log() const;
  // The postmaster's PID (its server processes are its children); 0 when not running.
  pid_t postmaster_pid() const;
  // Leaves the server running and its directory in place when this object goes (the shared
  // cluster below outlives the process that starts it). The directory's path, to stop it later.
  std::string Keep();

 private:
  PostgresCluster() = default;
  // Runs a PostgreSQL tool (as the cluster's owner when we are root); error with its output.
  absl::Status RunTool(const std::string& tool, const std::vector<std::string>& args,
                       absl::Duration timeout = absl::Seconds(60)) const;
  absl::Status StartServer();

  std::unique_ptr<TempDir> dir_;
  std::string run_as_;  // the system user owning the cluster when we are root; else empty
  int port_ = 0;
  bool running_ = false;
  bool kept_ = false;
  bool durable_ = true;
};

// The suites that run a second time on PostgreSQL (the ctest label `postgres`) do so with
// KILN_TEST_STORE=postgres in their environment: each test process starts a cluster of its own
// at its first database. Under ctest it is KILN_TEST_STORE=postgres-shared: every test takes its
// database on the one cluster a ctest fixture started for the run (initdb costs 0.5 s on an idle
// machine and 5 s on a busy one; ~120 tests paid it each), found through kSharedClusterFile.
bool TestStoreIsPostgres();

// The ctest fixture's side (tests/testutil/postgres_cluster_main.cc): starts the shared cluster
// and writes how to reach it to `state_file`, or writes why PostgreSQL cannot run here (the
// tests then skip as they would on their own); and stops it and removes its directory.
absl::Status StartSharedCluster(const std::string& state_file);
absl::Status StopSharedCluster(const std::string& state_file);
// KILN_REQUIRE_POSTGRES=1: a host that must run the PostgreSQL tests (a skip is a failure).
bool PostgresRequired();
// The exit code of a test process skipped for want of PostgreSQL (ctest's SKIP_RETURN_CODE).
inline constexpr int kSkipExitCode = 77;
// A new, empty database on the test process's cluster (started by the first call, stopped at
// exit), as a "postgres://…" URI. Where PostgreSQL cannot run, prints "SKIPPED: …" and exits
// with kSkipExitCode, or aborts with the reason when KILN_REQUIRE_POSTGRES=1 (a host that must
// run these tests). Any other failure aborts.
std::string TestDatabaseOrSkip();
// The postmaster of TestDatabaseOrSkip's cluster (0 before the first call), for benchmarks that
// charge the database's CPU to their work.
pid_t TestClusterPostmaster();

}  // namespace kiln::testutil
