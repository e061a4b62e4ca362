// Request validation for the WorkflowService frontend: required fields, id and name lengths,
// no NUL bytes in names (they separate key parts in the store), sizes of payloads, memos,
// headers, reasons and queries, known enum values. Each error names the field and the limit
// (orchestrator/history/limits.h), and every string and blob a request carries is bounded.
#pragma once

#include "absl/status/status.h"
#include "kiln/api/v1/workflow_service.pb.h"

namespace kiln::orchestrator {

absl::Status ValidateStart(const kiln::api::v1::StartWorkflowExecutionRequest& request);
absl::Status ValidateSignalWithStart(
    const kiln::api::v1::SignalWithStartWorkflowExecutionRequest& request);
absl::Status ValidateSignal(const kiln::api::v1::SignalWorkflowExecutionRequest& request);
absl::Status ValidateCancel(const kiln::api::v1::RequestCancelWorkflowExecutionRequest& request);
absl::Status ValidateTerminate(const kiln::api::v1::TerminateWorkflowExecutionRequest& request);
absl::Status ValidateReset(const kiln::api::v1::ResetWorkflowExecutionRequest& request);
absl::Status ValidateQuery(const kiln::api::v1::QueryWorkflowRequest& request);
absl::Status ValidateList(const kiln::api::v1::ListWorkflowExecutionsRequest& request);
absl::Status ValidateCount(const kiln::api::v1::CountWorkflowExecutionsRequest& request);
// Answers from workers: sizes, identities and enum values (the task token is the engine's).
// The sticky worker and the SDK's metadata (the commands are checked by the engine, each by
// its handler).
absl::Status ValidateWorkflowTaskCompleted(
    const kiln::api::v1::RespondWorkflowTaskCompletedRequest& request);
absl::Status ValidateWorkflowTaskFailed(
    const kiln::api::v1::RespondWorkflowTaskFailedRequest& request);
absl::Status ValidateQueryTaskCompleted(
    const kiln::api::v1::RespondQueryTaskCompletedRequest& request);
absl::Status ValidateHeartbeat(const kiln::api::v1::RecordActivityTaskHeartbeatRequest& request);
absl::Status ValidateActivityCompleted(
    const kiln::api::v1::RespondActivityTaskCompletedRequest& request);
absl::Status ValidateActivityFailed(const kiln::api::v1::RespondActivityTaskFailedRequest& request);
absl::Status ValidateActivityCanceled(
    const kiln::api::v1::RespondActivityTaskCanceledRequest& request);
absl::Status ValidateExecution(const kiln::api::v1::WorkflowExecution& execution,
                               bool run_id_required);
absl::Status ValidateNamespace(const std::string& ns);
absl::Status ValidateTaskQueue(const kiln::api::v1::TaskQueue& queue);
absl::Status ValidateIdentity(const std::string& identity);
// A worker instance id (PollWorkflowTaskQueueRequest.worker_instance_id, a completion's
// sticky_worker): optional, bounded like an identity.
absl::Status ValidateWorkerInstance(const std::string& id, const char* field);

}  // namespace kiln::orchestrator
