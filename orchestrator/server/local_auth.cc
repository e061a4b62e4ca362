#include "orchestrator/server/local_auth.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credentials.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::orchestrator {

absl::Status PrepareDataDir(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: cannot create '", data_dir, "': ", ec.message()));
  }
  // The directory holds the key, the admin credential and every workflow's payloads: nobody
  // else's business, whatever the umask was.
  if (::chmod(data_dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: cannot chmod 0700 '", data_dir, "': ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<LocalAuth> SetUpLocalAuth(const std::string& data_dir, const std::string& key_file) {
  const std::filesystem::path dir(data_dir);
  const std::string key_path = key_file.empty() ? (dir / "auth.key").string() : key_file;
  const std::string admin_path = (dir / std::string(auth::kAdminTokenFileName)).string();
  absl::StatusOr<auth::TokenKey> key = auth::TokenKey::LoadOrCreate(key_path);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("--auth-key-file: ", key.status().message()));
  }
  if (absl::Status admin = auth::EnsureAdminToken(*key, admin_path, absl::Now()); !admin.ok()) {
    return absl::Status(admin.code(), absl::StrCat("admin credential: ", admin.message()));
  }
  return LocalAuth{.key = *std::move(key), .key_file = key_path, .admin_token_file = admin_path};
}

}  // namespace kiln::orchestrator
