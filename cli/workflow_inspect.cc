// `kiln workflow list` and `kiln workflow describe`: read-only views of executions.
#include <algorithm>
#include <vector>

#include "cli/execution_format.h"
#include "cli/workflow_actions.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

namespace {
// The most the orchestrator returns in one page; asking for more only gets this many.
constexpr int kListPageSize = 1000;
}  // namespace

int ListWorkflows(WorkflowStub& stub, const ListOptions& options, const Io& io) {
  std::vector<api::WorkflowExecutionInfo> executions;
  api::ListWorkflowExecutionsRequest request;
  request.set_workflow_type(options.workflow_type);
  request.set_query(options.query);
  request.set_status(options.status);
  const int limit = std::clamp(options.limit, 1, kMaxListLimit);
  for (;;) {
    request.set_page_size(std::min(kListPageSize, limit - static_cast<int>(executions.size())));
    api::ListWorkflowExecutionsResponse response;
    grpc::Status status =
        stub.ListWorkflowExecutions(CallContext(kCallTimeout).get(), request, &response);
    if (!status.ok()) return ReportError(io, status);
    for (auto& e : *response.mutable_executions()) {
      if (static_cast<int>(executions.size()) >= limit) break;
      executions.push_back(std::move(e));
    }
    if (response.next_page_token().empty() || static_cast<int>(executions.size()) >= limit) break;
    request.set_next_page_token(response.next_page_token());
  }
  if (!options.json) {
    io.out << FormatExecutionList(executions);
    return 0;
  }
  for (const auto& e : executions) {
    if (int code = PrintJson(io, e, /*pretty=*/false); code != 0) return code;
  }
  return 0;
}

int DescribeWorkflow(WorkflowStub& stub, const DescribeOptions& options, const Io& io) {
  api::DescribeWorkflowExecutionRequest request;
  request.mutable_execution()->set_workflow_id(options.run.workflow_id);
  request.mutable_execution()->set_run_id(options.run.run_id);
  api::DescribeWorkflowExecutionResponse response;
  grpc::Status status =
      stub.DescribeWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, response, /*pretty=*/true);
  io.out << FormatDescription(response, absl::Now());
  return 0;
}

}  // namespace kiln::cli
