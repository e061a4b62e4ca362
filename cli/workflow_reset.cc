// `kiln workflow reset`: a new run of a workflow from one of its workflow tasks
// (ResetWorkflowExecution). Kept apart from the other workflow commands: its flag parsing
// (`--to`) and its call are its own.
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/workflow_actions.h"
#include "common/ids.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

absl::Status ParseResetPoint(const std::string& value,
                             api::ResetWorkflowExecutionRequest* request) {
  if (value == kResetToLastWorkflowTask) {
    request->set_reset_point(api::RESET_POINT_LAST_WORKFLOW_TASK);
    return absl::OkStatus();
  }
  if (value == kResetToFirstWorkflowTask) {
    request->set_reset_point(api::RESET_POINT_FIRST_WORKFLOW_TASK);
    return absl::OkStatus();
  }
  int64_t event_id = 0;
  if (absl::SimpleAtoi(value, &event_id) && event_id > 0) {
    request->set_workflow_task_finish_event_id(event_id);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("'", value, "' is not an event id (1 or more), ",
                                                 kResetToLastWorkflowTask, " or ",
                                                 kResetToFirstWorkflowTask));
}

int ResetWorkflow(WorkflowStub& stub, const ResetOptions& options, const Io& io) {
  api::ResetWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(options.run.workflow_id);
  request.mutable_workflow_execution()->set_run_id(options.run.run_id);
  if (absl::Status parsed = ParseResetPoint(options.to, &request); !parsed.ok()) {
    return ReportError(io, absl::StrCat("--to: ", parsed.message()), kExitUsage);
  }
  request.set_reason(options.reason);
  request.set_identity(Identity());
  // One id for this invocation: the retries of CallContext's call cannot make a second run.
  request.set_request_id(options.request_id.empty() ? RandomIdGenerator().NewUuid()
                                                    : options.request_id);
  api::ResetWorkflowExecutionResponse response;
  grpc::Status status =
      stub.ResetWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, response, /*pretty=*/true);
  io.out << response.run_id() << "\n";
  return kExitOk;
}

}  // namespace kiln::cli
