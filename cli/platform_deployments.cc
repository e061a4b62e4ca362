// `kiln deploy`, `kiln deployment list|get|logs|cancel|rollback` and `kiln preview stop`; see
// platform_actions.h. Following a log: the server's FollowLog ends when the deployment's
// workflow closes; this side follows in slices (so it notices a deployment that ended without
// a workflow, e.g. replaced while queued), resumes from the offset after the last byte written
// (no gap, no repeat), and reconnects for a while when the worker restarts.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/platform_actions.h"
#include "cli/platform_format.h"
#include "cli/progress_line.h"
#include "common/json_scalar.h"
#include "common/proto_time.h"

namespace kiln::cli {

namespace pb = ::kiln::platform::v1;

namespace {

// The most the server returns in one page; asking for more only gets this many.
constexpr int kPageSize = 1000;
// One FollowLog call lasts at most this long before the deployment's state is checked.
constexpr absl::Duration kFollowSlice = absl::Seconds(30);
// The deadline of a read that does not follow.
constexpr absl::Duration kReadTimeout = absl::Minutes(5);
// A deployment just triggered is unknown until its project has taken the push: this long.
constexpr absl::Duration kNewDeploymentGrace = absl::Seconds(30);
// How long a follow keeps reconnecting to an unavailable worker before it gives up.
constexpr absl::Duration kReconnectFor = absl::Seconds(60);
constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
// How often the progress line under a followed log is refreshed.
constexpr absl::Duration kProgressPeriod = absl::Seconds(1);

// Where the output of a log stands: the next offset to read, and whether what was written
// ends a line.
struct LogCursor {
  int64_t offset = 0;
  bool at_line_start = true;
};

grpc::Status FetchDeployment(BuildStub& stub, const std::string& id, pb::Deployment* out) {
  pb::GetDeploymentRequest request;
  request.set_deployment_id(id);
  return stub.GetDeployment(CallContext(kCallTimeout).get(), request, out);
}

// One FollowLog call from `cursor->offset`: writes what arrives and advances the cursor.
grpc::Status ReadLog(BuildStub& stub, const std::string& id, bool follow, LogCursor* cursor,
                     const Io& io) {
  pb::FollowLogRequest request;
  request.set_deployment_id(id);
  request.set_offset(cursor->offset);
  request.set_follow(follow);
  std::unique_ptr<grpc::ClientContext> context = CallContext(follow ? kFollowSlice : kReadTimeout);
  std::unique_ptr<grpc::ClientReaderInterface<pb::LogChunk>> reader =
      stub.FollowLog(context.get(), request);
  pb::LogChunk chunk;
  grpc::Status gap;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != cursor->offset) {
      gap = grpc::Status(
          grpc::StatusCode::DATA_LOSS,
          absl::StrCat("the log jumped from offset ", cursor->offset, " to ", chunk.offset()));
      context->TryCancel();
      break;
    }
    if (chunk.data().empty()) continue;
    io.log.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    io.log.flush();
    cursor->offset += static_cast<int64_t>(chunk.data().size());
    cursor->at_line_start = chunk.data().back() == '\n';
  }
  grpc::Status status = reader->Finish();
  return gap.ok() ? status : gap;
}

// Waits until the deployment has left the queue (or ended); NOT_FOUND is an answer only after
// `not_found_grace`.
grpc::Status WaitStarted(BuildStub& stub, const std::string& id, absl::Duration not_found_grace,
                         pb::Deployment* deployment) {
  const absl::Time give_up = absl::Now() + not_found_grace;
  absl::Duration backoff = kMinBackoff;
  for (;;) {
    grpc::Status status = FetchDeployment(stub, id, deployment);
    if (status.ok() && deployment->state() != pb::DEPLOYMENT_STATE_QUEUED) return status;
    if (!status.ok() &&
        (status.error_code() != grpc::StatusCode::NOT_FOUND || absl::Now() + backoff > give_up)) {
      return status;
    }
    absl::SleepFor(backoff);  // Queued behind another build, or not taken yet.
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

// Writes the deployment's log from the start until the deployment ends.
grpc::Status FollowLog(BuildStub& stub, const std::string& id, absl::Duration not_found_grace,
                       LogCursor* cursor, const Io& io) {
  pb::Deployment deployment;
  grpc::Status status = WaitStarted(stub, id, not_found_grace, &deployment);
  if (!status.ok()) return status;
  if (IsFinalState(deployment.state())) return ReadLog(stub, id, /*follow=*/false, cursor, io);
  absl::Time trying_since = absl::Now();
  absl::Duration backoff = kMinBackoff;
  for (;;) {
    const int64_t before = cursor->offset;
    status = ReadLog(stub, id, /*follow=*/true, cursor, io);
    // OK: the server saw the workflow close. DEADLINE_EXCEEDED: the slice ended.
    const bool closed = status.ok();
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      if (absl::Now() - trying_since > kReconnectFor) return status;
      absl::SleepFor(backoff);  // The worker is restarting: reconnect shortly.
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    if (!closed && status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) return status;
    trying_since = absl::Now();
    status = FetchDeployment(stub, id, &deployment);
    if (!status.ok() && status.error_code() != grpc::StatusCode::UNAVAILABLE) return status;
    if (status.ok() && IsFinalState(deployment.state())) {
      return closed ? grpc::Status::OK : ReadLog(stub, id, /*follow=*/false, cursor, io);
    }
    if (cursor->offset > before) {
      backoff = kMinBackoff;
    } else if (closed) {
      // Closed but not yet final in the answer: ask again shortly.
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }
}

// After a follow: the outcome line, exit 0 for SUCCEEDED and 1 for anything else.
int ReportOutcome(BuildStub& stub, const std::string& id, const LogCursor& cursor, const Io& io) {
  if (!cursor.at_line_start) io.out << "\n";
  pb::Deployment d;
  grpc::Status status = FetchDeployment(stub, id, &d);
  if (!status.ok()) return ReportError(io, status);
  std::string took;
  if (IsSet(d.finished_time()) && IsSet(d.created_time())) {
    took =
        absl::StrCat(" in ", TookText(FromProto(d.finished_time()) - FromProto(d.created_time())));
  }
  if (d.state() == pb::DEPLOYMENT_STATE_SUCCEEDED) {
    const std::string& where = d.url().empty() ? d.image_reference() : d.url();
    io.out << "Deployment " << id << " SUCCEEDED" << took << ": " << where << "\n";
    return 0;
  }
  std::string message = absl::StrCat("deployment ", id, " ", DeploymentStateName(d.state()), took);
  if (!d.error().empty()) absl::StrAppend(&message, ": ", d.error());
  return ReportError(io, message);
}

// Prints a new deployment's id (as {"deploymentId": ...} with `json`); with `follow`, its log
// and outcome.
int Started(BuildStub& stub, const std::string& id, bool follow, bool json, const Io& io) {
  if (json && !follow) {
    io.out << "{\"deploymentId\": " << json::EncodeString(id) << "}\n";
    return 0;
  }
  io.out << id << "\n";
  io.out.flush();
  return follow ? FollowDeployment(stub, id, io) : 0;
}

}  // namespace

int Deploy(BuildStub& stub, const DeployOptions& options, const Io& io) {
  if (options.project.empty()) {
    return ReportError(io, "name the project to deploy: kiln deploy trigger PROJECT --branch B",
                       kExitUsage);
  }
  pb::TriggerBuildRequest request;
  request.set_project_id(options.project);
  request.set_branch(options.branch);
  request.set_commit_sha(options.commit);
  pb::TriggerBuildResponse response;
  grpc::Status status = stub.TriggerBuild(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  return Started(stub, response.deployment_id(), options.follow, options.json, io);
}

int FollowDeployment(BuildStub& stub, const std::string& deployment_id, const Io& io) {
  return FollowDeployment(stub, deployment_id, kNewDeploymentGrace, io);
}

int FollowDeployment(BuildStub& stub, const std::string& deployment_id,
                     absl::Duration not_found_grace, const Io& io) {
  LogCursor cursor;
  grpc::Status status;
  if (io.terminal == nullptr) {
    status = FollowLog(stub, deployment_id, not_found_grace, &cursor, io);
  } else {
    // On a terminal: the log scrolls above a line saying what runs now and for how long.
    ProgressLine progress(io.terminal, io.log.rdbuf(), io.terminal_columns);
    std::ostream log(progress.log_buffer());
    const Io with_progress{io.out, io.err, log, io.server};
    {
      Ticker ticker(kProgressPeriod, [&stub, &deployment_id, &progress] {
        pb::Deployment d;
        if (FetchDeployment(stub, deployment_id, &d).ok()) {
          progress.SetStatus(FormatProgressLine(d, absl::Now()));
        }
      });
      status = FollowLog(stub, deployment_id, not_found_grace, &cursor, with_progress);
    }
    progress.Close();
  }
  if (!status.ok()) {
    if (!cursor.at_line_start) io.out << "\n";
    return ReportError(io, status);
  }
  return ReportOutcome(stub, deployment_id, cursor, io);
}

int ListDeployments(BuildStub& stub, const DeploymentListOptions& options, const Io& io) {
  const int limit = std::clamp(options.limit, 1, kMaxPlatformListLimit);
  std::vector<pb::Deployment> deployments;
  pb::ListDeploymentsRequest request;
  request.set_project_id(options.project);
  request.set_branch(options.branch);
  request.set_state(options.state);
  for (;;) {
    request.set_page_size(std::min(kPageSize, limit - static_cast<int>(deployments.size())));
    pb::ListDeploymentsResponse response;
    grpc::Status status = stub.ListDeployments(CallContext(kCallTimeout).get(), request, &response);
    if (!status.ok()) return ReportError(io, status);
    for (auto& d : *response.mutable_deployments()) {
      if (static_cast<int>(deployments.size()) >= limit) break;
      deployments.push_back(std::move(d));
    }
    if (response.next_page_token().empty() || static_cast<int>(deployments.size()) >= limit) break;
    request.set_page_token(response.next_page_token());
  }
  if (!options.json) {
    io.out << FormatDeploymentList(deployments, absl::Now());
    return 0;
  }
  return PrintJsonList(io, deployments, options.json_document);
}

int GetDeployment(BuildStub& stub, const DeploymentGetOptions& options, const Io& io) {
  pb::Deployment d;
  grpc::Status status = FetchDeployment(stub, options.id, &d);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, d, /*pretty=*/true);
  io.out << FormatDeployment(d, absl::Now());
  return 0;
}

int PrintDeploymentLogs(BuildStub& stub, const DeploymentLogsOptions& options, const Io& io) {
  if (options.follow) return FollowDeployment(stub, options.id, absl::ZeroDuration(), io);
  LogCursor cursor;
  grpc::Status status = ReadLog(stub, options.id, /*follow=*/false, &cursor, io);
  return status.ok() ? 0 : ReportError(io, status);
}

int CancelDeployment(BuildStub& stub, const DeploymentCancelOptions& options, const Io& io) {
  pb::CancelDeploymentRpcRequest request;
  request.set_deployment_id(options.id);
  request.set_reason(options.reason);
  pb::CancelDeploymentResponse response;
  grpc::Status status = stub.CancelDeployment(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) {
    io.out << "{\"deploymentId\": " << json::EncodeString(options.id)
           << ", \"cancelRequested\": true}\n";
    return 0;
  }
  io.out << "Asked deployment " << options.id << " to cancel.\n";
  return 0;
}

int Rollback(BuildStub& stub, const RollbackOptions& options, const Io& io) {
  pb::RollbackRpcRequest request;
  request.set_project_id(options.project);
  request.set_target_deployment_id(options.to);
  pb::RollbackResponse response;
  grpc::Status status = stub.Rollback(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  return Started(stub, response.deployment_id(), options.follow, options.json, io);
}

int StopPreview(BuildStub& stub, const PreviewStopOptions& options, const Io& io) {
  pb::StopPreviewRequest request;
  request.set_project_id(options.project);
  request.set_branch(options.branch);
  pb::StopPreviewResponse response;
  grpc::Status status = stub.StopPreview(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  io.out << "Stopping the preview of branch " << options.branch << " of project " << options.project
         << ".\n";
  return 0;
}

}  // namespace kiln::cli
