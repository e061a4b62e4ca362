#include "tests/testutil/orchestrator.h"

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credentials.h"
#include "common/auth/token.h"
#include "tests/testutil/http.h"
#include "tests/testutil/postgres.h"

namespace kiln::testutil {
namespace {

// The launcher's setup cannot fail in a working test environment; when it does, say so loudly.
[[noreturn]] void Die(const char* what, const absl::Status& status) {
  std::cerr << "OrchestratorProcess: cannot make " << what << ": " << status << "\n";
  std::abort();
}

bool UsePostgres(const std::vector<std::string>& extra_args) {
  if (!TestStoreIsPostgres()) return false;
  for (const std::string& arg : extra_args) {
    if (arg == "--store" || absl::StartsWith(arg, "--store=")) return false;  // The test's own.
  }
  return true;
}

}  // namespace

OrchestratorProcess::OrchestratorProcess(std::string data_dir, std::vector<std::string> extra_args,
                                         sdk::ConnectionOptions connection_options)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)) {
  if (UsePostgres(extra_args_)) {
    store_ = TestDatabaseOrSkip();
    extra_args_.insert(extra_args_.end(), {"--store", store_});
  }
  address_ = absl::StrCat("127.0.0.1:", FreePort());
  metrics_port_ = FreePort();
  key_file_ = data_dir_ + "/auth.key";
  for (size_t i = 0; i < extra_args_.size(); ++i) {
    const std::string& arg = extra_args_[i];
    if (absl::StartsWith(arg, "--auth-key-file=")) key_file_ = arg.substr(arg.find('=') + 1);
    if (arg == "--auth-key-file" && i + 1 < extra_args_.size()) key_file_ = extra_args_[i + 1];
  }
  // The key the orchestrator will find (and keep) on its first start.
  auto key = auth::TokenKey::LoadOrCreate(key_file_);
  if (!key.ok()) Die("the orchestrator's key", key.status());
  auth::Claims claims;
  claims.scope = auth::Scope::kAdmin;
  claims.subject = "kiln-test";
  claims.issued = absl::Now();
  claims.expiry = claims.issued + absl::Hours(24);
  auto token = key->Mint(claims);
  if (!token.ok()) Die("an admin token", token.status());
  admin_token_ = *token;
  connection_options.token = admin_token_;
  connection_ = std::make_unique<sdk::Connection>(address_, std::move(connection_options));
}

std::string OrchestratorProcess::AgentToken(const std::string& project) const {
  auto key = auth::TokenKey::Load(key_file_);
  if (!key.ok()) Die("the orchestrator's key", key.status());
  auth::Claims claims;
  claims.scope = auth::Scope::kAgent;
  claims.project = project;
  claims.subject = "kiln-test-agent";
  claims.issued = absl::Now();
  claims.expiry = claims.issued + absl::Hours(1);
  auto token = key->Mint(claims);
  if (!token.ok()) Die("an agent token", token.status());
  return *token;
}

std::string OrchestratorProcess::admin_token_file() const {
  return data_dir_ + "/" + std::string(auth::kAdminTokenFileName);
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

absl::StatusOr<int64_t> OrchestratorProcess::RpcCount(const std::string& method) const {
  absl::StatusOr<std::string> metrics = HttpGet("127.0.0.1", metrics_port_, "/metrics");
  if (!metrics.ok()) return metrics.status();
  const std::string key = absl::StrCat("kiln_rpc_latency_seconds_count{method=\"", method, "\"} ");
  size_t at = metrics->find(key);
  if (at == std::string::npos) return 0;
  int64_t count = 0;
  const size_t end = metrics->find('\n', at);
  if (!absl::SimpleAtoi(metrics->substr(at + key.size(), end - at - key.size()), &count)) {
    return absl::InternalError(absl::StrCat("unreadable metric line for ", method));
  }
  return count;
}

}  // namespace kiln::testutil
