#include "orchestrator/logservice/log_handler.h"

#include "common/rpc_status.h"
#include "common/status.h"
#include "orchestrator/logs/run_lookup.h"
#include "orchestrator/logservice/log_validation.h"

namespace kiln::orchestrator {

namespace api = ::kiln::api::v1;

LogHandler::LogHandler(LogDeps deps, LogOptions options)
    : deps_(std::move(deps)),
      options_(options),
      rpc_metrics_(deps_.registry),
      metrics_(deps_.registry),
      streams_(deps_.store, &metrics_),
      readers_(options_.max_readers) {}

LogHandler::~LogHandler() {
  Shutdown();
  readers_.WaitUntilEmpty();
}

void LogHandler::Shutdown() { readers_.Shutdown(); }

grpc::ServerUnaryReactor* LogHandler::AppendLog(grpc::CallbackServerContext* ctx,
                                                const api::AppendLogRequest* request,
                                                api::AppendLogResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time began = deps_.clock->Now();
  absl::StatusOr<Principal> principal = Principal{};
  if (deps_.authorizer != nullptr) principal = deps_.authorizer->Admit(*ctx, Rpc::kAppendLog);
  if (!principal.ok()) {
    rpc_metrics_.Record("AppendLog", principal.status(), absl::ZeroDuration());
    reactor->Finish(ToGrpc(principal.status()));
    return reactor;
  }
  if (absl::Status valid = ValidateAppendLog(*request); !valid.ok()) {
    rpc_metrics_.Record("AppendLog", valid, absl::ZeroDuration());
    reactor->Finish(ToGrpc(valid));
    return reactor;
  }
  const bool queued = deps_.executor->TrySubmit(
      [this, reactor, request, response, began, principal = std::move(*principal)] {
        absl::Status status = [&]() -> absl::Status {
          ASSIGN_OR_RETURN(
              std::string run_id,
              ResolveLogRun(*deps_.store, Namespace(request->namespace_()), request->execution()));
          if (deps_.authorizer != nullptr) {
            RETURN_IF_ERROR(deps_.authorizer->CheckAppendLog(principal, run_id));
          }
          ASSIGN_OR_RETURN(
              AppendOutcome outcome,
              streams_.Append(run_id, request->stream(), request->sequence(), request->data()));
          response->set_offset(outcome.offset);
          return absl::OkStatus();
        }();
        rpc_metrics_.Record("AppendLog", status, deps_.clock->Now() - began);
        reactor->Finish(ToGrpc(status));
      });
  if (!queued) {
    absl::Status status =
        absl::ResourceExhaustedError("orchestrator is overloaded: work queue full");
    rpc_metrics_.Record("AppendLog", status, absl::ZeroDuration());
    reactor->Finish(ToGrpc(status));
  }
  return reactor;
}

grpc::ServerWriteReactor<api::ReadLogResponse>* LogHandler::ReadLog(
    grpc::CallbackServerContext* ctx, const api::ReadLogRequest* request) {
  LogReaderEnv env{deps_.store,
                   &streams_,
                   deps_.executor,
                   deps_.clock,
                   &metrics_,
                   &rpc_metrics_,
                   &readers_,
                   options_.follow_idle_limit,
                   options_.follower_queue_bytes};
  absl::StatusOr<Principal> principal = Principal{};
  if (deps_.authorizer != nullptr) principal = deps_.authorizer->Admit(*ctx, Rpc::kReadLog);
  std::function<absl::Status()> admit;
  if (principal.ok() && deps_.authorizer != nullptr) {
    // On the executor: whose run it is takes a read.
    admit = [authorizer = deps_.authorizer, principal = *principal,
             ns = Namespace(request->namespace_()), execution = request->execution()] {
      return authorizer->CheckRun(principal, Rpc::kReadLog, ns, execution);
    };
  }
  auto* reader = new LogReader(env, Namespace(request->namespace_()), *request, std::move(admit));
  absl::Status admitted = principal.status();
  if (admitted.ok()) admitted = ValidateReadLog(*request);
  if (admitted.ok()) admitted = readers_.Add(reader);
  if (!admitted.ok()) {
    reader->End(admitted);
  } else {
    reader->Begin();
  }
  return reader;
}

}  // namespace kiln::orchestrator
