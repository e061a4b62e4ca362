#include "orchestrator/logservice/log_validation.h"

#include "absl/strings/str_cat.h"
#include "orchestrator/logs/log_limits.h"
#include "orchestrator/rpc/validation.h"

namespace kiln::orchestrator {

absl::Status ValidateStreamName(const std::string& stream) {
  if (stream.empty()) return absl::InvalidArgumentError("stream: must be set");
  if (stream.size() > log_limits::kMaxStreamNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("stream: ", stream.size(),
                                                   " bytes is over the limit of ",
                                                   log_limits::kMaxStreamNameBytes));
  }
  if (stream.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("stream: must not contain NUL bytes");
  }
  return absl::OkStatus();
}

absl::Status ValidateAppendLog(const kiln::api::v1::AppendLogRequest& request) {
  for (absl::Status s : {ValidateNamespace(request.namespace_()),
                         ValidateExecution(request.execution(), /*run_id_required=*/false),
                         ValidateStreamName(request.stream())}) {
    if (!s.ok()) return s;
  }
  if (request.sequence() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence: ", request.sequence(), " is negative (0 means none)"));
  }
  if (request.data().size() > log_limits::kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("data: ", request.data().size(),
                                                   " bytes is over the limit of ",
                                                   log_limits::kMaxChunkBytes, " per append"));
  }
  return absl::OkStatus();
}

absl::Status ValidateReadLog(const kiln::api::v1::ReadLogRequest& request) {
  for (absl::Status s : {ValidateNamespace(request.namespace_()),
                         ValidateExecution(request.execution(), /*run_id_required=*/false),
                         ValidateStreamName(request.stream())}) {
    if (!s.ok()) return s;
  }
  if (request.from_offset() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("from_offset: ", request.from_offset(), " is negative"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::orchestrator
