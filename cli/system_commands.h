// `kiln health` and `kiln info`: is the orchestrator serving, and what version and data
// directory it runs with.
#pragma once

#include "absl/time/time.h"
#include "cli/rpc.h"
#include "sdk/connection.h"

namespace kiln::cli {

// Prints "SERVING <address>", or reports why not (exit 1).
int CheckHealth(sdk::Connection& connection, absl::Duration timeout, const Io& io);
// Prints the orchestrator's address, version, data directory and start time.
int ShowInfo(sdk::Connection& connection, const Io& io);

}  // namespace kiln::cli
