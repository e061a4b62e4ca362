#include "orchestrator/rpc/validation.h"

#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "orchestrator/history/limits.h"
#include "orchestrator/history/retry.h"
#include "orchestrator/visibility/search_attributes.h"

namespace kiln::orchestrator {
namespace {

namespace api = ::kiln::api::v1;

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

// A blob (payloads, memo, header, failure) by its encoded size.
absl::Status CheckSize(const google::protobuf::Message& message, const char* field, size_t max) {
  const size_t size = message.ByteSizeLong();
  if (size > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", size, " bytes is over the limit of ", max));
  }
  return absl::OkStatus();
}

// Free text (reasons, messages): bounded, NUL allowed (it is never part of a key).
absl::Status CheckText(const std::string& value, const char* field, size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", value.size(), " bytes is over the limit of ", max));
  }
  return absl::OkStatus();
}

// An enum field holding a number this server does not know (a newer client, or a forged
// request) is refused by name rather than taken as some default.
template <typename IsValid>
absl::Status CheckEnum(int value, const char* field, IsValid is_valid) {
  if (!is_valid(value)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": unknown value ", value));
  }
  return absl::OkStatus();
}

absl::Status FirstError(std::initializer_list<absl::Status> checks) {
  for (const absl::Status& s : checks) {
    if (!s.ok()) return s;
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

absl::Status ValidateWorkflowTaskCompleted(
    const kiln::api::v1::RespondWorkflowTaskCompletedRequest& request) {
  const auto& metadata = request.sdk_metadata();
  if (static_cast<size_t>(metadata.core_used_flags_size()) > limits::kMaxSdkFlags ||
      static_cast<size_t>(metadata.lang_used_flags_size()) > limits::kMaxSdkFlags) {
    return absl::InvalidArgumentError(
        absl::StrCat("sdk_metadata: more than ", limits::kMaxSdkFlags, " flags of a kind"));
  }
  return FirstError(
      {ValidateWorkerInstance(request.sticky_worker(), "sticky_worker"),
       CheckName(metadata.sdk_name(), "sdk_metadata.sdk_name", limits::kMaxNameLength, false),
       CheckName(metadata.sdk_version(), "sdk_metadata.sdk_version", limits::kMaxNameLength,
                 false)});
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
           CheckDuration(request.wait_for_close(), "wait_for_close"),
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
  if (request.has_retry_policy()) {
    api::RetryPolicy policy = request.retry_policy();
    if (absl::Status s = NormalizeRetryPolicy(&policy); !s.ok()) return s;
  }
  return FirstError({
      CheckSize(request.input(), "input", limits::kMaxPayloadBytes),
      CheckSize(request.memo(), "memo", limits::kMaxMemoBytes),
      CheckSize(request.header(), "header", limits::kMaxHeaderBytes),
      CheckEnum(request.workflow_id_reuse_policy(), "workflow_id_reuse_policy",
                api::WorkflowIdReusePolicy_IsValid),
      CheckEnum(request.workflow_id_conflict_policy(), "workflow_id_conflict_policy",
                api::WorkflowIdConflictPolicy_IsValid),
  });
}

absl::Status ValidateSignalWithStart(const api::SignalWithStartWorkflowExecutionRequest& request) {
  return FirstError({
      ValidateStart(request.start()),
      CheckName(request.signal_name(), "signal_name", limits::kMaxNameLength, true),
      CheckSize(request.signal_input(), "signal_input", limits::kMaxPayloadBytes),
  });
}

absl::Status ValidateSignal(const api::SignalWorkflowExecutionRequest& request) {
  return FirstError({
      ValidateNamespace(request.namespace_()),
      ValidateExecution(request.workflow_execution(), false),
      CheckName(request.signal_name(), "signal_name", limits::kMaxNameLength, true),
      ValidateIdentity(request.identity()),
      CheckName(request.request_id(), "request_id", limits::kMaxIdLength, false),
      CheckSize(request.input(), "input", limits::kMaxPayloadBytes),
      CheckSize(request.header(), "header", limits::kMaxHeaderBytes),
  });
}

absl::Status ValidateCancel(const api::RequestCancelWorkflowExecutionRequest& request) {
  return FirstError({
      ValidateNamespace(request.namespace_()),
      ValidateExecution(request.workflow_execution(), false),
      ValidateIdentity(request.identity()),
      CheckName(request.request_id(), "request_id", limits::kMaxIdLength, false),
      CheckText(request.reason(), "reason", limits::kMaxReasonBytes),
  });
}

absl::Status ValidateTerminate(const api::TerminateWorkflowExecutionRequest& request) {
  return FirstError({
      ValidateNamespace(request.namespace_()),
      ValidateExecution(request.workflow_execution(), false),
      ValidateIdentity(request.identity()),
      CheckText(request.reason(), "reason", limits::kMaxReasonBytes),
      CheckSize(request.details(), "details", limits::kMaxPayloadBytes),
  });
}

absl::Status ValidateReset(const api::ResetWorkflowExecutionRequest& request) {
  if (request.reset_point() == api::RESET_POINT_UNSPECIFIED &&
      request.workflow_task_finish_event_id() <= 0) {
    return absl::InvalidArgumentError(
        "workflow_task_finish_event_id: must be a positive event id when reset_point is not set");
  }
  return FirstError({
      ValidateNamespace(request.namespace_()),
      ValidateExecution(request.workflow_execution(), false),
      ValidateIdentity(request.identity()),
      CheckName(request.request_id(), "request_id", limits::kMaxIdLength, false),
      CheckText(request.reason(), "reason", limits::kMaxReasonBytes),
      CheckEnum(request.reset_point(), "reset_point", api::ResetPoint_IsValid),
  });
}

absl::Status ValidateQuery(const api::QueryWorkflowRequest& request) {
  return FirstError({
      ValidateNamespace(request.namespace_()),
      ValidateExecution(request.execution(), false),
      CheckName(request.query().query_type(), "query.query_type", limits::kMaxNameLength, true),
      CheckSize(request.query().query_args(), "query.query_args", limits::kMaxPayloadBytes),
  });
}

absl::Status ValidateList(const api::ListWorkflowExecutionsRequest& request) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError("page_size: must not be negative");
  }
  return FirstError({
      ValidateNamespace(request.namespace_()),
      CheckName(request.workflow_type(), "workflow_type", limits::kMaxNameLength, false),
      CheckName(request.workflow_id(), "workflow_id", limits::kMaxIdLength, false),
      CheckText(request.query(), "query", limits::kMaxQueryLength),
      CheckText(request.next_page_token(), "next_page_token", limits::kMaxIdLength * 4),
      CheckEnum(request.status(), "status", api::WorkflowExecutionStatus_IsValid),
  });
}

absl::Status ValidateCount(const api::CountWorkflowExecutionsRequest& request) {
  return FirstError({
      ValidateNamespace(request.namespace_()),
      CheckText(request.query(), "query", limits::kMaxQueryLength),
  });
}

absl::Status ValidateWorkflowTaskFailed(const api::RespondWorkflowTaskFailedRequest& request) {
  return FirstError({
      ValidateIdentity(request.identity()),
      CheckText(request.binary_checksum(), "binary_checksum", limits::kMaxIdLength),
      CheckSize(request.failure(), "failure", limits::kMaxFailureBytes),
      CheckEnum(request.cause(), "cause", api::WorkflowTaskFailedCause_IsValid),
  });
}

absl::Status ValidateQueryTaskCompleted(const api::RespondQueryTaskCompletedRequest& request) {
  return FirstError({
      CheckSize(request.query_result(), "query_result", limits::kMaxPayloadBytes),
      CheckText(request.error_message(), "error_message", limits::kMaxReasonBytes),
      CheckEnum(request.completed_type(), "completed_type", api::QueryResultType_IsValid),
  });
}

absl::Status ValidateHeartbeat(const api::RecordActivityTaskHeartbeatRequest& request) {
  return FirstError({
      ValidateIdentity(request.identity()),
      CheckSize(request.details(), "details", limits::kMaxPayloadBytes),
  });
}

absl::Status ValidateActivityCompleted(const api::RespondActivityTaskCompletedRequest& request) {
  return FirstError({
      ValidateIdentity(request.identity()),
      ValidateIdentity(request.workflow_task_identity()),
      CheckSize(request.result(), "result", limits::kMaxPayloadBytes),
      ValidateWorkerInstance(request.speculative_workflow_task().completion().sticky_worker(),
                             "speculative_workflow_task.completion.sticky_worker"),
  });
}

absl::Status ValidateActivityFailed(const api::RespondActivityTaskFailedRequest& request) {
  return FirstError({
      ValidateIdentity(request.identity()),
      CheckSize(request.failure(), "failure", limits::kMaxFailureBytes),
      CheckSize(request.last_heartbeat_details(), "last_heartbeat_details",
                limits::kMaxPayloadBytes),
  });
}

absl::Status ValidateActivityCanceled(const api::RespondActivityTaskCanceledRequest& request) {
  return FirstError({
      ValidateIdentity(request.identity()),
      CheckSize(request.details(), "details", limits::kMaxPayloadBytes),
  });
}

}  // namespace kiln::orchestrator
