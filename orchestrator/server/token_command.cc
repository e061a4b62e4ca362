#include "orchestrator/server/token_command.h"

#include <filesystem>

#include "absl/time/clock.h"
#include "common/auth/token.h"

namespace kiln::orchestrator {

TokenCommand::TokenCommand(CLI::App& app) {
  command_ = app.add_subcommand(
      "token",
      "Mint a token with the orchestrator's key file and print it (for operators); its id and "
      "expiry go to stderr (revoke it with `kiln token revoke ID`)");
  // The server's --data-dir and --auth-key-file may follow the subcommand too.
  command_->fallthrough();
  command_->add_option("--scope", scope_, "admin, worker, agent or read-only")->required();
  command_->add_option("--project", project_, "The project an agent token serves (agents only)");
  command_
      ->add_option("--queues", queues_,
                   "The task queues a worker token serves, comma-separated; 'p*' is a prefix "
                   "(workers only)")
      ->delimiter(',');
  command_->add_option("--ttl", ttl_, "How long the token is valid (e.g. 30m, 1h, 720h)")
      ->capture_default_str();
  command_->add_option("--subject", subject_, "Who the token is for (shown in logs)")
      ->capture_default_str();
  command_->add_option("--key-file", key_file_,
                       "Key file (default: --auth-key-file, else <data-dir>/auth.key)");
}

int TokenCommand::Run(const ServerOptions& server, std::ostream& out, std::ostream& err) const {
  auth::Claims claims;
  absl::StatusOr<auth::Scope> scope = auth::ParseScope(scope_);
  absl::Duration ttl;
  if (!scope.ok()) {
    err << "kiln-orchestrator token: --scope: " << scope.status().message() << "\n";
    return 2;
  }
  if (!absl::ParseDuration(ttl_, &ttl) || ttl <= absl::ZeroDuration()) {
    err << "kiln-orchestrator token: --ttl: '" << ttl_ << "' is not a positive duration\n";
    return 2;
  }
  std::string key_file = key_file_;
  if (key_file.empty()) key_file = server.auth_key_file;
  if (key_file.empty()) key_file = (std::filesystem::path(server.data_dir) / "auth.key").string();
  absl::StatusOr<auth::TokenKey> key = auth::TokenKey::LoadOrCreate(key_file);
  if (!key.ok()) {
    err << "kiln-orchestrator token: " << key.status().message() << "\n";
    return 1;
  }
  claims.scope = *scope;
  claims.project = project_;
  claims.queues = queues_;
  claims.subject = subject_;
  claims.issued = absl::Now();
  claims.expiry = claims.issued + ttl;
  absl::StatusOr<std::string> token = key->Mint(claims);
  if (!token.ok()) {
    err << "kiln-orchestrator token: " << token.status().message() << "\n";
    return 2;
  }
  // The id names the token to `kiln token revoke`; on stderr, so that stdout is the token alone.
  absl::StatusOr<auth::Claims> minted = key->Verify(*token, absl::Now());
  if (minted.ok()) {
    err << "kiln-orchestrator token: id " << minted->id << ", expires "
        << absl::FormatTime(absl::RFC3339_sec, minted->expiry, absl::UTCTimeZone()) << "\n";
  }
  out << *token << "\n";
  return 0;
}

}  // namespace kiln::orchestrator
