// `kiln workflow start` and `kiln workflow terminate`: the commands that change a workflow.
#include "cli/payloads.h"
#include "cli/workflow_actions.h"
#include "common/ids.h"
#include "common/json_scalar.h"
#include "common/proto_time.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

int StartWorkflow(WorkflowStub& stub, const StartOptions& options, const Io& io) {
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id(options.workflow_id);
  request.mutable_workflow_type()->set_name(options.workflow_type);
  request.mutable_task_queue()->set_name(options.task_queue);
  if (options.has_input) *request.mutable_input() = EncodeInput(options.input);
  if (options.run_timeout > absl::ZeroDuration())
    ToProto(options.run_timeout, request.mutable_workflow_run_timeout());
  request.set_identity(Identity());
  request.set_request_id(options.request_id.empty() ? RandomIdGenerator().NewUuid()
                                                    : options.request_id);
  api::StartWorkflowExecutionResponse response;
  grpc::Status status =
      stub.StartWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, response, /*pretty=*/true);
  if (!response.started()) {
    io.err << "kiln: request id " << request.request_id()
           << " matched an earlier start; its run id follows\n";
  }
  io.out << response.run_id() << "\n";
  return 0;
}

int TerminateWorkflow(WorkflowStub& stub, const TerminateOptions& options, const Io& io) {
  api::TerminateWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(options.run.workflow_id);
  request.mutable_workflow_execution()->set_run_id(options.run.run_id);
  request.set_reason(options.reason);
  request.set_identity(Identity());
  api::TerminateWorkflowExecutionResponse response;
  grpc::Status status =
      stub.TerminateWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) {
    io.out << "{\"workflowId\": " << json::EncodeString(options.run.workflow_id)
           << ", \"runId\": " << json::EncodeString(options.run.run_id)
           << ", \"terminated\": true}\n";
    return 0;
  }
  io.out << "terminated workflow " << options.run.workflow_id;
  if (!options.run.run_id.empty()) io.out << " run " << options.run.run_id;
  io.out << "\n";
  return 0;
}

}  // namespace kiln::cli
