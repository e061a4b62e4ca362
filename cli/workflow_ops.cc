// `kiln workflow signal`, `query`, `cancel` and `stack`; see workflow_ops.h.
#include "cli/workflow_ops.h"

#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/format.h"
#include "cli/payloads.h"
#include "common/ids.h"
#include "common/json_scalar.h"
#include "common/proto_time.h"
#include "sdk/stack_trace.h"
#include "sdk/workflow.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

namespace {

// "workflow build-42" or "workflow build-42 run 0f3c..."
std::string RunText(const RunRef& run) {
  std::string text = absl::StrCat("workflow ", run.workflow_id);
  if (!run.run_id.empty()) absl::StrAppend(&text, " run ", run.run_id);
  return text;
}

// A refused call, with what was tried in front of the server's words. Unreachable, refused
// tokens and missing workflows are said as every command says them (cli/rpc.h).
int ReportRefused(const Io& io, const grpc::Status& status, const std::string& tried,
                  const RunRef& run) {
  if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
    return ReportError(io, status);
  }
  return ReportError(
      io,
      absl::StrCat(tried, ": ", status.error_message(), " (kiln workflow describe --id ",
                   run.workflow_id, " shows its status)"),
      ExitCodeFor(status.error_code()));
}

// One JSON object of string fields, in the given order.
std::string JsonObject(std::initializer_list<std::pair<const char*, std::string>> fields) {
  std::string json = "{";
  bool first = true;
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&json, first ? "" : ", ", json::EncodeString(key), ": ",
                    json::EncodeString(value));
    first = false;
  }
  return json + "}";
}

std::string Encoding(const api::Payload& payload) {
  auto it = payload.metadata().find("encoding");
  return it == payload.metadata().end() ? "" : it->second;
}

// One payload as a JSON value: JSON as it is, text as a string, anything else as the base64 of
// its bytes (a string too).
std::string PayloadJson(const api::Payload& payload) {
  const std::string encoding = Encoding(payload);
  if (encoding == "json/plain" || encoding == "json/protobuf") return payload.data();
  if (encoding == "text/plain" || encoding.empty()) return json::EncodeString(payload.data());
  return json::EncodeString(absl::Base64Escape(payload.data()));
}

// One payload as text: JSON and text as they are, binary as its size and encoding.
std::string PayloadText(const api::Payload& payload) {
  const std::string encoding = Encoding(payload);
  if (encoding.empty() || absl::StartsWith(encoding, "json/") || encoding == "text/plain") {
    return payload.data();
  }
  return absl::StrCat("<", payload.data().size(), " bytes ", encoding, ">");
}

// Sends the query; the answer in `answer`, or the exit code after reporting why there is none.
int Query(WorkflowStub& stub, const RunRef& run, const std::string& type, const api::Payloads* args,
          absl::Duration timeout, const Io& io, api::QueryWorkflowResponse* answer) {
  api::QueryWorkflowRequest request;
  request.mutable_execution()->set_workflow_id(run.workflow_id);
  request.mutable_execution()->set_run_id(run.run_id);
  request.mutable_query()->set_query_type(type);
  if (args != nullptr) *request.mutable_query()->mutable_query_args() = *args;
  // The orchestrator gives up a margin before the call's deadline, so its own "no worker"
  // answer arrives rather than a bare deadline.
  grpc::Status status =
      stub.QueryWorkflow(CallContext(timeout + kLongPollMargin).get(), request, answer);
  if (status.ok()) return kExitOk;
  const std::string tried = absl::StrCat("query '", type, "' of ", RunText(run));
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      absl::StartsWith(status.error_message(), "no worker")) {
    return ReportError(
        io,
        absl::StrCat(tried, " was not answered within ", DurationText(timeout), ": ",
                     status.error_message(),
                     ". Start a worker that hosts the workflow's type on that queue, or pass a "
                     "longer --timeout."),
        kExitFailed);
  }
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    return ReportError(io, absl::StrCat(tried, " failed in the worker: ", status.error_message()),
                       kExitFailed);
  }
  return ReportError(io, status);
}

const char* KindName(api::AwaitKind kind) {
  switch (kind) {
    case api::AWAIT_KIND_ACTIVITY:
      return "activity";
    case api::AWAIT_KIND_TIMER:
      return "timer";
    case api::AWAIT_KIND_CHILD_WORKFLOW:
      return "child";
    case api::AWAIT_KIND_EXTERNAL_SIGNAL:
      return "signal-out";
    case api::AWAIT_KIND_EXTERNAL_CANCEL:
      return "cancel-out";
    case api::AWAIT_KIND_SIGNAL:
      return "signal";
    case api::AWAIT_KIND_CONDITION:
      return "condition";
    case api::AWAIT_KIND_CANCELLATION:
      return "cancellation";
    default:
      return "unknown";
  }
}

std::string AwaitDetails(const api::PendingAwait& p) {
  KeyValues details;
  switch (p.kind()) {
    case api::AWAIT_KIND_ACTIVITY:
      details.Add("type", p.activity_type()).Add("activity_id", p.activity_id());
      break;
    case api::AWAIT_KIND_TIMER:
      details.Add("timer_id", p.timer_id()).Add("duration", DurationText(p.timer_duration()));
      if (p.has_fire_time()) details.Add("fires", FormatTimestamp(p.fire_time()));
      break;
    case api::AWAIT_KIND_CHILD_WORKFLOW:
      details.Add("workflow_id", p.workflow_id())
          .Add("type", p.workflow_type())
          .Add("state", p.child_started() ? "running" : "starting");
      break;
    case api::AWAIT_KIND_EXTERNAL_SIGNAL:
      details.Add("workflow_id", p.workflow_id()).Add("signal", p.signal_name());
      break;
    case api::AWAIT_KIND_EXTERNAL_CANCEL:
      details.Add("workflow_id", p.workflow_id());
      break;
    case api::AWAIT_KIND_SIGNAL:
      details.Add("name", p.signal_name());
      break;
    default:
      break;
  }
  return details.str();
}

std::string Where(const api::PendingAwait& p) {
  if (!p.has_location() || p.location().line() == 0) return "-";
  std::string where = absl::StrCat(p.location().file(), ":", p.location().line());
  if (!p.location().function().empty()) absl::StrAppend(&where, " in ", p.location().function());
  return where;
}

}  // namespace

std::string FormatStackTrace(const api::WorkflowStackTrace& trace) {
  std::ostringstream out;
  out << "Workflow " << trace.workflow_id() << " (type " << trace.workflow_type() << ", run "
      << trace.run_id() << ")\n";
  Table awaited({"KIND", "DETAILS", "WHERE"});
  Table started({"KIND", "DETAILS", "WHERE"});
  for (const api::PendingAwait& p : trace.pending()) {
    (p.awaited() ? awaited : started).AddRow({KindName(p.kind()), AwaitDetails(p), Where(p)});
  }
  if (awaited.rows() == 0) {
    out << "Waiting on nothing: no coroutine of the workflow is suspended on an SDK await (it has "
           "returned, or its code waits on something only it knows).\n";
  } else {
    out << "Waiting on (" << awaited.rows() << "):\n";
    awaited.Render(out, "  ");
  }
  if (started.rows() > 0) {
    out << "Started, not awaited now (" << started.rows() << "):\n";
    started.Render(out, "  ");
  }
  return out.str();
}

int SignalWorkflow(WorkflowStub& stub, const SignalOptions& options, const Io& io) {
  api::SignalWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(options.run.workflow_id);
  request.mutable_workflow_execution()->set_run_id(options.run.run_id);
  request.set_signal_name(options.name);
  if (!options.input_file.empty()) {
    std::ifstream file(options.input_file, std::ios::binary);
    std::stringstream content;
    content << file.rdbuf();
    if (!file) {
      return ReportError(io,
                         absl::StrCat("cannot read --input-file ", options.input_file,
                                      ": check that the file exists and is readable"),
                         kExitUsage);
    }
    *request.mutable_input() = EncodeInput(content.str());
  } else if (options.has_input) {
    *request.mutable_input() = EncodeInput(options.input);
  }
  request.set_identity(Identity());
  // A retry of this call inside gRPC is delivered once.
  request.set_request_id(RandomIdGenerator().NewUuid());
  api::SignalWorkflowExecutionResponse response;
  grpc::Status status =
      stub.SignalWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) {
    return ReportRefused(
        io, status, absl::StrCat("cannot signal ", RunText(options.run), " with ", options.name),
        options.run);
  }
  if (options.json) {
    io.out << JsonObject({{"workflowId", options.run.workflow_id},
                          {"runId", options.run.run_id},
                          {"signalName", options.name}})
           << "\n";
  } else {
    io.out << "signaled " << RunText(options.run) << " with " << options.name << "\n";
  }
  return kExitOk;
}

int QueryWorkflow(WorkflowStub& stub, const QueryOptions& options, const Io& io) {
  std::optional<api::Payloads> args;
  if (options.has_input) args = EncodeInput(options.input);
  api::QueryWorkflowResponse response;
  if (int code = Query(stub, options.run, options.type, args ? &*args : nullptr, options.timeout,
                       io, &response);
      code != kExitOk) {
    return code;
  }
  const auto& payloads = response.query_result().payloads();
  if (options.json) {
    if (payloads.empty()) {
      io.out << "null\n";
    } else if (payloads.size() == 1) {
      io.out << PayloadJson(payloads[0]) << "\n";
    } else {
      std::string array = "[";
      for (int i = 0; i < payloads.size(); ++i) {
        absl::StrAppend(&array, i == 0 ? "" : ", ", PayloadJson(payloads[i]));
      }
      io.out << array << "]\n";
    }
    return kExitOk;
  }
  for (const api::Payload& payload : payloads) io.out << PayloadText(payload) << "\n";
  return kExitOk;
}

int CancelWorkflow(WorkflowStub& stub, const CancelOptions& options, const Io& io) {
  api::RequestCancelWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(options.run.workflow_id);
  request.mutable_workflow_execution()->set_run_id(options.run.run_id);
  request.set_reason(options.reason);
  request.set_identity(Identity());
  request.set_request_id(RandomIdGenerator().NewUuid());
  api::RequestCancelWorkflowExecutionResponse response;
  grpc::Status status =
      stub.RequestCancelWorkflowExecution(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) {
    return ReportRefused(io, status, absl::StrCat("cannot cancel ", RunText(options.run)),
                         options.run);
  }
  if (options.json) {
    io.out << JsonObject({{"workflowId", options.run.workflow_id},
                          {"runId", options.run.run_id},
                          {"reason", options.reason}})
           << "\n";
  } else {
    io.out << "cancel requested for " << RunText(options.run)
           << " (its code decides how it ends; kiln workflow result --id "
           << options.run.workflow_id << " waits for it)\n";
  }
  return kExitOk;
}

int PrintStack(WorkflowStub& stub, const StackOptions& options, const Io& io) {
  api::QueryWorkflowResponse response;
  if (int code =
          Query(stub, options.run, sdk::kStackTraceQuery, nullptr, options.timeout, io, &response);
      code != kExitOk) {
    return code;
  }
  absl::StatusOr<api::WorkflowStackTrace> trace = sdk::DecodeStackTrace(response.query_result());
  if (options.json) {
    // As the worker sent it: fields a newer SDK adds pass through.
    const auto& payloads = response.query_result().payloads();
    io.out << (payloads.size() == 1 ? PayloadJson(payloads[0]) : "null") << "\n";
    return kExitOk;
  }
  if (!trace.ok()) {
    // Another SDK's stack trace (a Temporal SDK answers with one JSON string): shown as text.
    for (const api::Payload& payload : response.query_result().payloads()) {
      absl::StatusOr<std::string> text = json::ParseString(payload.data());
      io.out << (text.ok() ? *text : PayloadText(payload)) << "\n";
    }
    return kExitOk;
  }
  io.out << FormatStackTrace(*trace);
  return kExitOk;
}

}  // namespace kiln::cli
