// Request validation of kiln.api.v1.LogService, before any work: the run reference (as the
// WorkflowService checks it), the stream name, the chunk size, the sequence and the offset.
// Each error names the field and, where there is one, the limit.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "kiln/api/v1/log_service.pb.h"

namespace kiln::orchestrator {

// 1..200 bytes, no NUL (names are key parts, NUL separates them).
absl::Status ValidateStreamName(const std::string& stream);
absl::Status ValidateAppendLog(const kiln::api::v1::AppendLogRequest& request);
absl::Status ValidateReadLog(const kiln::api::v1::ReadLogRequest& request);

}  // namespace kiln::orchestrator
