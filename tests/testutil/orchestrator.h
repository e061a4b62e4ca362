// A real kiln-orchestrator process for integration tests: its own data directory and ports on
// 127.0.0.1, started and waited for (health), killed or stopped by PID, restartable on the
// same data directory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sdk/connection.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {

class OrchestratorProcess {
 public:
  // `data_dir` persists across restarts; logs go to `data_dir`/../orchestrator-N.log.
  explicit OrchestratorProcess(std::string data_dir, std::vector<std::string> extra_args = {});
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
  sdk::Connection& connection() { return *connection_; }
  std::string Log() const;

 private:
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::string address_;
  int metrics_port_ = 0;
  int starts_ = 0;
  std::string log_path_;
  std::unique_ptr<Process> process_;
  std::unique_ptr<sdk::Connection> connection_;
};

}  // namespace kiln::testutil
