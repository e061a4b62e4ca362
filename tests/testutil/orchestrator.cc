#include "tests/testutil/orchestrator.h"

#include <signal.h>

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace kiln::testutil {

OrchestratorProcess::OrchestratorProcess(std::string data_dir, std::vector<std::string> extra_args)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)) {
  address_ = absl::StrCat("127.0.0.1:", FreePort());
  metrics_port_ = FreePort();
  connection_ = std::make_unique<sdk::Connection>(address_);
}

OrchestratorProcess::~OrchestratorProcess() { Kill(); }

absl::Status OrchestratorProcess::Start() {
  // A fresh metrics port each start: the previous process's port may linger (civetweb does not
  // reuse an address a killed process still had connections on).
  metrics_port_ = FreePort();
  std::vector<std::string> args = {"--data-dir", data_dir_,
                                   "--listen",   address_,
                                   "--metrics",  absl::StrCat("127.0.0.1:", metrics_port_)};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  log_path_ = absl::StrCat(std::filesystem::path(data_dir_).parent_path().string(),
                           "/orchestrator-", ++starts_, ".log");
  auto process = Process::Start(BinaryPath("kiln-orchestrator"), args, log_path_);
  if (!process.ok()) return process.status();
  process_ = std::move(*process);
  // The channel may still hold the previous process's connection: a call on it fails at once
  // ("broken pipe") before gRPC reconnects, so keep asking until the deadline.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status health;
  do {
    health = connection_->CheckHealth(absl::Seconds(5));
  } while (!health.ok() && absl::IsUnavailable(health) && process_->Running() &&
           absl::Now() < deadline);
  if (!health.ok() || !process_->Running()) {
    if (health.ok()) health = absl::UnavailableError("the orchestrator exited at start");
    return absl::Status(health.code(), absl::StrCat(health.message(), "; log:\n", Log()));
  }
  return absl::OkStatus();
}

void OrchestratorProcess::Kill() {
  if (!process_) return;
  process_->Signal(SIGKILL);
  (void)process_->Wait(absl::Seconds(30));  // Reaped; the exit code of a kill says nothing.
  process_.reset();
}

absl::StatusOr<int> OrchestratorProcess::Stop() {
  if (!process_) return absl::FailedPreconditionError("not running");
  process_->Signal(SIGTERM);
  auto code = process_->Wait(absl::Seconds(30));
  if (code.ok()) process_.reset();
  return code;
}

std::string OrchestratorProcess::Log() const { return ReadFile(log_path_); }

}  // namespace kiln::testutil
