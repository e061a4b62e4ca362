// `kiln workflow history` and `kiln workflow result`: both read a run's history, the first
// page by page (long-polling for new events with --follow), the second by long-polling for
// the close event alone.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cli/event_format.h"
#include "cli/format.h"
#include "cli/workflow_actions.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

namespace {

// A page token belongs to one run, so a command that makes several calls pins the run first:
// the workflow id could otherwise move on to a new run between two calls.
grpc::Status ResolveRunId(WorkflowStub& stub, const RunRef& run, std::string* run_id) {
  if (!run.run_id.empty()) {
    *run_id = run.run_id;
    return grpc::Status::OK;
  }
  api::DescribeWorkflowExecutionRequest request;
  request.mutable_execution()->set_workflow_id(run.workflow_id);
  api::DescribeWorkflowExecutionResponse response;
  grpc::Status status =
      stub.DescribeWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (status.ok()) *run_id = response.workflow_execution_info().execution().run_id();
  return status;
}

// The run a close event hands over to (continue-as-new, a retry), or "".
std::string NextRunId(const api::HistoryEvent& close) {
  switch (close.attributes_case()) {
    case api::HistoryEvent::kWorkflowExecutionContinuedAsNewEventAttributes:
      return close.workflow_execution_continued_as_new_event_attributes().new_execution_run_id();
    case api::HistoryEvent::kWorkflowExecutionCompletedEventAttributes:
      return close.workflow_execution_completed_event_attributes().new_execution_run_id();
    case api::HistoryEvent::kWorkflowExecutionFailedEventAttributes:
      return close.workflow_execution_failed_event_attributes().new_execution_run_id();
    case api::HistoryEvent::kWorkflowExecutionTimedOutEventAttributes:
      return close.workflow_execution_timed_out_event_attributes().new_execution_run_id();
    default:
      return "";
  }
}

int PrintOutcome(const std::string& workflow_id, const api::HistoryEvent& close, const Io& io) {
  switch (close.event_type()) {
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      for (const auto& p :
           close.workflow_execution_completed_event_attributes().result().payloads())
        io.out << p.data() << "\n";
      return 0;
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      return ReportError(
          io, absl::StrCat("workflow ", workflow_id, " failed: ",
                           close.workflow_execution_failed_event_attributes().failure().message()));
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
      return ReportError(
          io, absl::StrCat("workflow ", workflow_id, " was terminated: ",
                           close.workflow_execution_terminated_event_attributes().reason()));
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
      return ReportError(io, absl::StrCat("workflow ", workflow_id, " timed out"));
    case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      return ReportError(io, absl::StrCat("workflow ", workflow_id, " was canceled"));
    default:
      return ReportError(io, absl::StrCat("workflow ", workflow_id, " closed with ",
                                          EventTypeName(close.event_type())));
  }
}

}  // namespace

int PrintHistory(WorkflowStub& stub, const HistoryOptions& options, const Io& io) {
  api::GetWorkflowExecutionHistoryRequest request;
  request.mutable_execution()->set_workflow_id(options.run.workflow_id);
  grpc::Status status =
      ResolveRunId(stub, options.run, request.mutable_execution()->mutable_run_id());
  if (!status.ok()) return ReportError(io, status);
  request.set_wait_new_event(options.follow);
  // `--output json` prints one array, opened now and closed once every event is out, so a
  // followed run's events are one document too.
  bool first_event = true;
  if (options.json_document) io.out << "[";
  for (;;) {
    api::GetWorkflowExecutionHistoryResponse response;
    status = stub.GetWorkflowExecutionHistory(
        CallContext(options.follow ? kLongPollTimeout : kCallTimeout).get(), request, &response);
    // A long poll that the server did not answer in time is retried, like an empty answer.
    if (options.follow && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) continue;
    if (!status.ok()) return ReportError(io, status);
    for (const auto& event : response.history().events()) {
      if (options.json_document) {
        auto json = ToJson(event, /*pretty=*/false);
        if (!json.ok()) return ReportError(io, std::string(json.status().message()));
        io.out << (first_event ? "\n" : ",\n") << *json;
        first_event = false;
      } else if (options.json) {
        if (int code = PrintJson(io, event, /*pretty=*/false); code != 0) return code;
      } else {
        io.out << FormatEventLine(event) << "\n";
      }
    }
    io.out.flush();
    // No token: the run is closed and every event has been read.
    if (response.next_page_token().empty()) {
      if (options.json_document) io.out << (first_event ? "]\n" : "\n]\n");
      return 0;
    }
    if (!options.follow && response.history().events_size() == 0) {
      return ReportError(io, "the orchestrator returned an empty history page with a page token");
    }
    request.set_next_page_token(response.next_page_token());
  }
}

int WaitForResult(WorkflowStub& stub, const ResultOptions& options, const Io& io) {
  const absl::Time deadline = absl::Now() + options.timeout;
  api::GetWorkflowExecutionHistoryRequest request;
  request.mutable_execution()->set_workflow_id(options.run.workflow_id);
  grpc::Status status =
      ResolveRunId(stub, options.run, request.mutable_execution()->mutable_run_id());
  if (!status.ok()) return ReportError(io, status);
  request.set_wait_new_event(true);
  request.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return ReportError(io, absl::StrCat("workflow ", options.run.workflow_id,
                                          " did not close within ", DurationText(options.timeout)));
    }
    // The server answers kLongPollMargin before the call's deadline: this poll ends about when
    // the time left runs out.
    absl::Duration poll = std::min(left, kLongPollTimeout - kLongPollMargin) + kLongPollMargin;
    api::GetWorkflowExecutionHistoryResponse response;
    status = stub.GetWorkflowExecutionHistory(CallContext(poll).get(), request, &response);
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) continue;
    if (!status.ok()) return ReportError(io, status);
    if (response.history().events_size() == 0) continue;  // the poll ended with no close yet
    const api::HistoryEvent& close = response.history().events(0);
    if (std::string next = NextRunId(close); !next.empty()) {
      request.mutable_execution()->set_run_id(next);
      continue;
    }
    return PrintOutcome(options.run.workflow_id, close, io);
  }
}

}  // namespace kiln::cli
