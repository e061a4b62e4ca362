// The process's open-file limit. Servers raise the soft limit to the hard one at start: the
// usual soft limit of 1,024 is reached by 1,024 connections, and gRPC's listener stops
// accepting for good at the first accept that fails for lack of descriptors.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln {

struct OpenFileLimit {
  uint64_t before = 0;  // soft limit found
  uint64_t soft = 0;    // soft limit now in force
  uint64_t hard = 0;
};

// Raises the soft RLIMIT_NOFILE to the hard limit (never lowers it).
absl::StatusOr<OpenFileLimit> RaiseOpenFileLimit();

// RaiseOpenFileLimit, logged as "<process>.open_files" (a failure as a warning: the process
// goes on with the limit it has). Returns the soft limit in force (0 if unknown).
uint64_t RaiseOpenFileLimitAndLog(std::string_view process);

// The connections a listener may keep open by default: the soft open-file limit less what the
// rest of the process may hold (a reserve of min(512, limit/2)), divided by `descriptors_each`
// (what one connection costs: 1 for gRPC, 3 for HTTP through kiln-worker's TLS front); at
// least 16. 1,000 when the limit is unknown or infinite.
int DefaultMaxConnections(int descriptors_each = 1);

}  // namespace kiln
