#include "orchestrator/rpc/validation.h"

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {
namespace {

absl::Status CheckName(const std::string& value, const char* field, size_t max, bool required) {
  if (value.empty()) {
    if (required) return absl::InvalidArgumentError(absl::StrCat(field, ": must be set"));
    return absl::OkStatus();
  }
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", value.size(), " bytes is over the limit of ", max));
  }
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain NUL bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckDuration(const google::protobuf::Duration& d, const char* field) {
  if (FromProto(d) < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be negative"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateNamespace(const std::string& ns) {
  return CheckName(ns, "namespace", limits::kMaxNameLength, false);
}

absl::Status ValidateTaskQueue(const kiln::api::v1::TaskQueue& queue) {
  return CheckName(queue.name(), "task_queue.name", limits::kMaxNameLength, true);
}

absl::Status ValidateIdentity(const std::string& identity) {
  return CheckName(identity, "identity", limits::kMaxIdLength, false);
}

absl::Status ValidateWorkerInstance(const std::string& id, const char* field) {
  return CheckName(id, field, limits::kMaxIdLength, false);
}

absl::Status ValidateExecution(const kiln::api::v1::WorkflowExecution& execution,
                               bool run_id_required) {
  if (absl::Status s =
          CheckName(execution.workflow_id(), "workflow_id", limits::kMaxIdLength, true);
      !s.ok()) {
    return s;
  }
  return CheckName(execution.run_id(), "run_id", limits::kMaxIdLength, run_id_required);
}

absl::Status ValidateStart(const kiln::api::v1::StartWorkflowExecutionRequest& request) {
  for (absl::Status s : {
           ValidateNamespace(request.namespace_()),
           CheckName(request.workflow_id(), "workflow_id", limits::kMaxIdLength, true),
           CheckName(request.workflow_type().name(), "workflow_type.name", limits::kMaxNameLength,
                     true),
           ValidateTaskQueue(request.task_queue()),
           CheckName(request.request_id(), "request_id", limits::kMaxIdLength, false),
           ValidateIdentity(request.identity()),
           CheckDuration(request.workflow_execution_timeout(), "workflow_execution_timeout"),
           CheckDuration(request.workflow_run_timeout(), "workflow_run_timeout"),
           CheckDuration(request.workflow_task_timeout(), "workflow_task_timeout"),
           CheckName(request.speculative_first_task().run_id(), "speculative_first_task.run_id",
                     limits::kMaxIdLength, false),
           CheckName(request.speculative_first_task().completion().sticky_worker(),
                     "speculative_first_task.completion.sticky_worker", limits::kMaxIdLength,
                     false),
       }) {
    if (!s.ok()) return s;
  }
  if (request.search_attributes().indexed_fields_size() > 0) {
    if (absl::Status s = ValidateSearchAttributes(request.search_attributes()); !s.ok()) return s;
  }
  if (request.input().ByteSizeLong() > limits::kMaxPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("input: ", request.input().ByteSizeLong(),
                                                   " bytes is over the limit of ",
                                                   limits::kMaxPayloadBytes));
  }
  return absl::OkStatus();
}

}  // namespace kiln::orchestrator
