// The console's live logs as server-sent events (see console.h): a deployment's build log,
// followed the way BuildService's FollowLog follows it, and any run's log stream, read from the
// orchestrator's LogService as `kiln workflow logs --follow` reads it.
#include <grpcpp/client_context.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "worker/console/console.h"
#include "worker/console/console_internal.h"
#include "worker/workflows/platform.h"

namespace kiln::worker::console {
namespace {

using internal::CallContext;
using internal::ErrorResponse;
using internal::Execution;
using internal::QueryParam;
using internal::ToJsonLine;

// How long one ReadLog waits for more output before the stream checks on the run (and on the
// client, with a comment line) again.
constexpr absl::Duration kFollowSlice = absl::Milliseconds(500);
// A queued deployment has no run yet: how often to look for it.
constexpr absl::Duration kQueuedPoll = absl::Milliseconds(200);
// What the browser waits before reconnecting after a stream ends.
constexpr int kRetryMs = 500;

// Gives back a stream slot when the response (and the stream it holds) is destroyed, whether the
// stream ran or not.
struct StreamSlot {
  std::shared_ptr<std::atomic<int>> count;
  ~StreamSlot() { count->fetch_sub(1); }
};

// Where a stream starts: Last-Event-ID (a reconnect) or ?offset=; kInvalidArgument otherwise.
absl::StatusOr<int64_t> StartOffset(const HttpRequest& request) {
  const std::string* last_event_id = request.Header("Last-Event-ID");
  std::string from =
      last_event_id != nullptr ? *last_event_id : QueryParam(request.query, "offset").value_or("0");
  if (from.empty()) from = "0";
  int64_t offset = 0;
  if (!absl::SimpleAtoi(from, &offset) || offset < 0) {
    return absl::InvalidArgumentError("offset (Last-Event-ID) must be a non-negative number");
  }
  return offset;
}

bool IsStreamName(const std::string& name) {
  if (name.empty() || name.size() > kMaxConsoleStreamNameBytes) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

}  // namespace

std::variant<std::shared_ptr<void>, HttpResponse> Console::TakeStreamSlot() {
  if (stopping_->load()) return JsonError(503, "kiln-worker is stopping");
  if (log_streams_->fetch_add(1) >= options_.max_log_streams) {
    log_streams_->fetch_sub(1);
    HttpResponse busy = JsonError(
        503, absl::StrCat("at most ", options_.max_log_streams, " logs are followed at once"));
    busy.headers.push_back({"Retry-After", "2"});
    return busy;
  }
  return std::shared_ptr<void>(new StreamSlot{log_streams_});
}

HttpResponse Console::FollowLog(const std::string& id, const HttpRequest& request) {
  if (ProjectOfDeployment(id).empty()) return JsonError(400, "not a deployment id");
  absl::StatusOr<int64_t> start = StartOffset(request);
  if (!start.ok()) return ErrorResponse(start.status());
  int64_t offset = *start;
  // The deployment must exist (a clear 404 rather than a stream that never says anything).
  absl::StatusOr<pb::Deployment> deployment = options_.api->GetDeployment(id);
  if (!deployment.ok()) return ErrorResponse(deployment.status());

  auto taken = TakeStreamSlot();
  if (auto* refused = std::get_if<HttpResponse>(&taken)) return *refused;
  std::shared_ptr<void> slot = std::get<std::shared_ptr<void>>(taken);

  HttpResponse response;
  response.content_type = "text/event-stream; charset=utf-8";
  response.headers.push_back({"Cache-Control", "no-cache"});
  PlatformApi* platform = options_.api;
  const absl::Duration slice = options_.log_stream_slice;
  std::shared_ptr<std::atomic<bool>> stopping = stopping_;
  response.stream = [platform, slot, stopping, id, offset,
                     slice](const HttpBodyWriter& write) mutable {
    const absl::Time until = absl::Now() + slice;
    if (!write(absl::StrCat("retry: ", kRetryMs, "\n\n"))) return;
    bool last = false;
    while (absl::Now() < until && !stopping->load()) {
      // Whether the run has closed, before reading: a read after the close gets everything.
      absl::StatusOr<PlatformApi::DeploymentRun> run = platform->DeploymentRunState(id);
      if (!run.ok()) return;  // The client reconnects and resumes from its last id.
      if (*run == PlatformApi::DeploymentRun::kQueued) {
        // The comment finds a gone client.
        if (!write(": queued\n\n")) return;
        absl::SleepFor(kQueuedPoll);
        continue;
      }
      last = *run == PlatformApi::DeploymentRun::kClosed;

      absl::StatusOr<int64_t> read = platform->ReadBuildLog(
          id, offset, !last, last ? absl::Seconds(20) : kFollowSlice,
          [&](const pb::LogChunk& chunk) {
            offset = chunk.offset() + static_cast<int64_t>(chunk.data().size());
            return write(
                absl::StrCat("id: ", offset, "\nevent: log\ndata: ", ToJsonLine(chunk), "\n\n"));
          });
      // A gone client, or an error: the client reconnects and resumes from its last id.
      if (!read.ok()) return;
      if (last) {
        absl::StatusOr<pb::Deployment> ended = platform->GetDeployment(id);
        pb::Deployment end = ended.ok() ? *ended : pb::Deployment();
        (void)write(absl::StrCat("id: ", offset, "\nevent: end\ndata: ", ToJsonLine(end), "\n\n"));
        return;
      }
      if (!write(": more\n\n")) return;
    }
  };
  return response;
}

HttpResponse Console::FollowWorkflowLog(const HttpRequest& request) {
  absl::StatusOr<api::WorkflowExecution> execution = Execution(request);
  if (!execution.ok()) return ErrorResponse(execution.status());
  const std::string stream = QueryParam(request.query, "stream").value_or("build");
  if (!IsStreamName(stream)) {
    return JsonError(400, absl::StrCat("stream: 1 to ", kMaxConsoleStreamNameBytes,
                                       " letters, digits, '-', '_' or '.'"));
  }
  absl::StatusOr<int64_t> start = StartOffset(request);
  if (!start.ok()) return ErrorResponse(start.status());
  // The run must exist (a clear 404), and is pinned: a reconnect reads the same run's stream
  // even when the workflow has moved on to another run.
  api::DescribeWorkflowExecutionRequest describe;
  describe.set_namespace_(options_.api->ns());
  *describe.mutable_execution() = *execution;
  api::DescribeWorkflowExecutionResponse described;
  grpc::Status found = Engine().DescribeWorkflowExecution(
      EngineContext(request, options_.rpc_timeout).get(), describe, &described);
  if (!found.ok()) return ErrorResponse(found);
  describe.mutable_execution()->set_run_id(
      described.workflow_execution_info().execution().run_id());

  auto taken = TakeStreamSlot();
  if (auto* refused = std::get_if<HttpResponse>(&taken)) return *refused;
  std::shared_ptr<void> slot = std::get<std::shared_ptr<void>>(taken);

  HttpResponse response;
  response.content_type = "text/event-stream; charset=utf-8";
  response.headers.push_back({"Cache-Control", "no-cache"});
  // The stream outlives this call: it keeps what it needs of the request (the caller's token,
  // which the orchestrator checks on each call, as on every engine call of the console).
  sdk::Connection* engine = &EngineConnection();
  const std::string* caller = engine_as_caller() ? request.Header("Authorization") : nullptr;
  const std::string authorization = caller != nullptr ? *caller : "";
  const absl::Duration slice = options_.log_stream_slice;
  const absl::Duration rpc_timeout = options_.rpc_timeout;
  std::shared_ptr<std::atomic<bool>> stopping = stopping_;
  int64_t offset = *start;
  response.stream = [engine, authorization, slot, stopping, describe, stream, offset, slice,
                     rpc_timeout](const HttpBodyWriter& write) mutable {
    const absl::Time until = absl::Now() + slice;
    if (!write(absl::StrCat("retry: ", kRetryMs, "\n\n"))) return;
    auto context_for = [&](absl::Duration timeout) {
      auto context = CallContext(timeout);
      if (!authorization.empty()) context->AddMetadata("authorization", authorization);
      return context;
    };
    api::LogService::Stub logs(engine->channel());
    while (absl::Now() < until && !stopping->load()) {
      // Whether the run has closed, before reading: a read after the close gets everything.
      api::DescribeWorkflowExecutionResponse now;
      if (!engine->workflow_service()
               .DescribeWorkflowExecution(context_for(rpc_timeout).get(), describe, &now)
               .ok()) {
        return;  // The client reconnects and resumes from its last id.
      }
      const bool last =
          now.workflow_execution_info().status() != api::WORKFLOW_EXECUTION_STATUS_RUNNING;
      api::ReadLogRequest read;
      read.set_namespace_(describe.namespace_());
      *read.mutable_execution() = describe.execution();
      read.set_stream(stream);
      read.set_from_offset(offset);
      read.set_follow(!last);
      auto context = context_for(last ? absl::Seconds(20) : kFollowSlice);
      auto reader = logs.ReadLog(context.get(), read);
      api::ReadLogResponse chunk;
      while (reader->Read(&chunk)) {
        offset = chunk.offset() + static_cast<int64_t>(chunk.data().size());
        if (!write(
                absl::StrCat("id: ", offset, "\nevent: log\ndata: ", ToJsonLine(chunk), "\n\n"))) {
          context->TryCancel();
          (void)reader->Finish();  // Cancelled by us: its status says nothing more.
          return;
        }
      }
      grpc::Status status = reader->Finish();
      // A read that ends at its deadline, or finds no stream yet, is not an error.
      if (!status.ok() && status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
          status.error_code() != grpc::StatusCode::NOT_FOUND) {
        return;
      }
      if (last) {
        (void)write(absl::StrCat("id: ", offset, "\nevent: end\ndata: ", ToJsonLine(now), "\n\n"));
        return;
      }
      if (!write(": more\n\n")) return;
    }
  };
  return response;
}

}  // namespace kiln::worker::console
