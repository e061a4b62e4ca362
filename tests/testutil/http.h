// A minimal HTTP/1.0 GET over loopback for tests (metrics endpoints, webhooks).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace kiln::testutil {

// Returns the response body of GET http://host:port/path; an error for a non-200 answer.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path);

}  // namespace kiln::testutil
