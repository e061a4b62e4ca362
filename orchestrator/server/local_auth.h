// The orchestrator's credentials at start: the data directory closed to others (0700), the
// token key loaded or created, the local admin credential (`<data-dir>/admin.token`, 0600)
// written, and a loud warning when the gRPC listener is reachable beyond loopback without TLS.
// This is what keeps the embedded default a two-command start with tokens required: the local
// CLI reads the admin credential; kiln-worker mints its tokens with the key.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "common/auth/token.h"

namespace kiln::orchestrator {

// Creates `data_dir` when missing and makes it mode 0700. kFailedPrecondition naming the flag.
absl::Status PrepareDataDir(const std::string& data_dir);

struct LocalAuth {
  auth::TokenKey key;
  std::string key_file;
  std::string admin_token_file;
};

// Loads or creates the key (`key_file`, else `<data_dir>/auth.key`) and keeps a valid admin
// token in `<data_dir>/admin.token` (auth/credentials.h). Errors name the file, never a secret.
absl::StatusOr<LocalAuth> SetUpLocalAuth(const std::string& data_dir, const std::string& key_file);

}  // namespace kiln::orchestrator
