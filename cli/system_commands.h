// `kiln health`, `kiln info` and `kiln token revoke`: is the orchestrator serving, what version
// and data directory it runs with; refuse a token from now on.
#pragma once

#include <string>

#include "absl/time/time.h"
#include "cli/rpc.h"
#include "sdk/connection.h"

namespace kiln::cli {

// Prints "SERVING <address>", or reports why not (exit 1).
int CheckHealth(sdk::Connection& connection, absl::Duration timeout, const Io& io);
// Prints the orchestrator's address, version, data directory and start time.
int ShowInfo(sdk::Connection& connection, const Io& io);
// Revokes a token (an admin's call): `token_or_id` is a token ("kiln1.…") or a token's id.
// Prints "revoked <id> until <expiry>" (or "already revoked ...").
int RevokeToken(sdk::Connection& connection, const std::string& token_or_id, const Io& io);

}  // namespace kiln::cli
