// `kiln workflow list`, `count` and `describe`: read-only views of executions.
#include <algorithm>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/execution_format.h"
#include "cli/format.h"
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
  return PrintJsonList(io, executions, options.json_document);
}

namespace {

grpc::Status Count(WorkflowStub& stub, const std::string& query,
                   api::CountWorkflowExecutionsResponse* response) {
  api::CountWorkflowExecutionsRequest request;
  request.set_query(query);
  return stub.CountWorkflowExecutions(CallContext(kCallTimeout).get(), request, response);
}

}  // namespace

int CountWorkflows(WorkflowStub& stub, const CountOptions& options, const Io& io) {
  api::CountWorkflowExecutionsResponse response;
  if (grpc::Status status = Count(stub, options.query, &response); !status.ok()) {
    return ReportError(io, status);
  }
  const int64_t total = response.count();
  if (!options.group_by_status) {
    if (options.json) return PrintJson(io, response, /*pretty=*/true);
    io.out << total << "\n";
    return kExitOk;
  }
  // The orchestrator counts one query at a time: one call per status, each the query ANDed
  // with that status. Runs closing meanwhile can make the groups differ from the total.
  std::vector<std::pair<std::string, int64_t>> groups;
  for (int s = api::WorkflowExecutionStatus_MIN; s <= api::WorkflowExecutionStatus_MAX; ++s) {
    if (!api::WorkflowExecutionStatus_IsValid(s) || s == api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED)
      continue;
    const std::string name = EnumToCamelCase(
        api::WorkflowExecutionStatus_Name(static_cast<api::WorkflowExecutionStatus>(s)),
        "WORKFLOW_EXECUTION_STATUS_");
    std::string query = absl::StrCat("ExecutionStatus = \"", name, "\"");
    if (!options.query.empty()) query = absl::StrCat("(", options.query, ") AND ", query);
    api::CountWorkflowExecutionsResponse group;
    if (grpc::Status status = Count(stub, query, &group); !status.ok()) {
      return ReportError(io, status);
    }
    if (group.count() > 0) groups.emplace_back(name, group.count());
  }
  if (options.json) {
    // As protobuf's JSON printer writes the ungrouped count: int64 as a string, so no script
    // loses digits, and indented the same way.
    std::ostringstream json;
    json << "{\n \"count\": \"" << total << "\",\n \"groups\": [";
    for (size_t i = 0; i < groups.size(); ++i) {
      json << (i == 0 ? "\n" : ",\n") << "  {\"status\": \"" << groups[i].first
           << "\", \"count\": \"" << groups[i].second << "\"}";
    }
    json << (groups.empty() ? "]\n}\n" : "\n ]\n}\n");
    io.out << json.str();
    return kExitOk;
  }
  Table table({"STATUS", "COUNT"});
  for (const auto& [name, count] : groups) table.AddRow({name, absl::StrCat(count)});
  table.AddRow({"Total", absl::StrCat(total)});
  table.Render(io.out);
  return kExitOk;
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
