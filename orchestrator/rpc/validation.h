// Request validation for the WorkflowService frontend: required fields, id and name lengths,
// no NUL bytes in names (they separate key parts in the store), payload sizes. Each error
// names the field and the limit.
#pragma once

#include "absl/status/status.h"
#include "kiln/api/v1/workflow_service.pb.h"

namespace kiln::orchestrator {

absl::Status ValidateStart(const kiln::api::v1::StartWorkflowExecutionRequest& request);
absl::Status ValidateExecution(const kiln::api::v1::WorkflowExecution& execution,
                               bool run_id_required);
absl::Status ValidateNamespace(const std::string& ns);
absl::Status ValidateTaskQueue(const kiln::api::v1::TaskQueue& queue);
absl::Status ValidateIdentity(const std::string& identity);
// A worker instance id (PollWorkflowTaskQueueRequest.worker_instance_id, a completion's
// sticky_worker): optional, bounded like an identity.
absl::Status ValidateWorkerInstance(const std::string& id, const char* field);

}  // namespace kiln::orchestrator
