// Where a caller's token comes from, and the admin credential the orchestrator keeps beside its
// key so that a local operator needs no setup (the two-command start).
//
// A token file holds one token (surrounding whitespace ignored). The orchestrator writes
// `<data-dir>/admin.token` (mode 0600, directory 0700) on start; the CLI reads it when nothing
// else names a token. Errors name the file, never what it holds.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/token.h"

namespace kiln::auth {

// The admin credential's file name inside the orchestrator's data directory.
inline constexpr std::string_view kAdminTokenFileName = "admin.token";
// How long a generated admin credential lives; it is replaced on a start when less than
// kAdminTokenRenewal is left (or it no longer verifies, e.g. after the key changed).
inline constexpr absl::Duration kAdminTokenLifetime = absl::Hours(24 * 365);
inline constexpr absl::Duration kAdminTokenRenewal = absl::Hours(24 * 30);

// The token in `path`, trimmed. kNotFound when the file does not exist; kFailedPrecondition
// when it cannot be read, is empty or is longer than a token may be.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Writes `content` to `path` atomically with mode 0600 (temporary file, fsync, rename).
absl::Status WriteSecretFile(const std::string& path, std::string_view content);

// Keeps the admin token in `path` when it verifies with `key` as an admin token with at least
// kAdminTokenRenewal left; else mints a new one (subject "local-admin") and writes it.
absl::Status EnsureAdminToken(const TokenKey& key, const std::string& path, absl::Time now);

// The token a client presents, from the first of: `token` (a flag or KILN_TOKEN), the file
// `token_file` (a flag or KILN_TOKEN_FILE; it must exist), `<$KILN_DATA_DIR>/admin.token`, then
// `kiln-data/admin.token` (the orchestrator's default data directory) when those exist. Empty
// when none does (the call goes without a token).
absl::StatusOr<std::string> ResolveClientToken(const std::string& token,
                                               const std::string& token_file);

}  // namespace kiln::auth
