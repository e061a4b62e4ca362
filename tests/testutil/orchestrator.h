// A real kiln-orchestrator process for integration tests: its own data directory and ports on
// 127.0.0.1, started and waited for (health), killed or stopped by PID, restartable on the
// same data directory. Tokens are required, as in production: the constructor creates the
// orchestrator's key (as its first start would) and mints an admin token that connection()
// presents; admin_token_file() is the credential the orchestrator itself writes on start.
//
// The store: RocksDB in the data directory, unless the environment says KILN_TEST_STORE=postgres
// (the ctest label `postgres` runs the engine and integration suites so): then each
// OrchestratorProcess gets a database of its own (`--store postgres://…`) on one PostgreSQL
// cluster the test process starts and stops at exit (TestDatabaseOrSkip in
// tests/testutil/postgres.h, which also says what happens where PostgreSQL cannot run).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sdk/connection.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {

class OrchestratorProcess {
 public:
  // `data_dir` persists across restarts; logs go to `data_dir`/../orchestrator-N.log.
  // `connection_options` is how connection() reaches it (TLS when extra_args turn it on); its
  // token is replaced by admin_token().
  explicit OrchestratorProcess(std::string data_dir, std::vector<std::string> extra_args = {},
                               sdk::ConnectionOptions connection_options = {});
  ~OrchestratorProcess();

  // Starts the process and waits until it serves.
  absl::Status Start();
  // SIGKILL: no chance to flush anything.
  void Kill();
  // SIGTERM and wait; returns the exit code.
  absl::StatusOr<int> Stop();

  const std::string& address() const { return address_; }
  pid_t pid() const { return process_ ? process_->pid() : 0; }
  int metrics_port() const { return metrics_port_; }
  // How many calls of `method` it has answered (its RPC latency histogram's count; 0 before
  // the first), read from its /metrics.
  absl::StatusOr<int64_t> RpcCount(const std::string& method) const;
  // Presents admin_token().
  sdk::Connection& connection() { return *connection_; }
  // An admin token minted with key_file() (valid for a day).
  const std::string& admin_token() const { return admin_token_; }
  // The orchestrator's key (`--auth-key-file` when extra_args name one, else data_dir/auth.key).
  const std::string& key_file() const { return key_file_; }
  // data_dir/admin.token: written by the orchestrator on start (the CLI's --token-file).
  std::string admin_token_file() const;
  // An agent token of `project` (valid for an hour), for a kiln-builder-agent's --token.
  std::string AgentToken(const std::string& project) const;
  std::string Log() const;
  // "postgres://…" when this orchestrator keeps its state in PostgreSQL (KILN_TEST_STORE), else
  // empty (RocksDB in the data directory).
  const std::string& store() const { return store_; }

 private:
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::string store_;
  std::string address_;
  int metrics_port_ = 0;
  int starts_ = 0;
  std::string log_path_;
  std::string key_file_;
  std::string admin_token_;
  std::unique_ptr<Process> process_;
  std::unique_ptr<sdk::Connection> connection_;
};

}  // namespace kiln::testutil
