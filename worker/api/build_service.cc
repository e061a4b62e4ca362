#include "worker/api/build_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc_status.h"
#include "worker/workflows/platform.h"

namespace kiln::worker {
namespace {

// One follow call lasts at most this long before the run is checked for its close.
constexpr absl::Duration kFollowSlice = absl::Milliseconds(500);
constexpr absl::Duration kMaxFollow = absl::Hours(2);
// How often a follower of a deployment still waiting its turn looks again.
constexpr absl::Duration kQueuedPoll = absl::Milliseconds(200);

template <class T>
grpc::Status Answer(const absl::StatusOr<T>& result, T* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = *result;
  return grpc::Status::OK;
}

}  // namespace

grpc::Status BuildServiceImpl::CreateProject(grpc::ServerContext* context,
                                             const pb::CreateProjectRequest* request,
                                             pb::CreateProjectResponse* response) {
  if (grpc::Status denied = Authorize(*context, "CreateProject", false); !denied.ok())
    return denied;
  return Answer(api_->CreateProject(*request), response);
}

grpc::Status BuildServiceImpl::UpdateProject(grpc::ServerContext* context,
                                             const pb::UpdateProjectRequest* request,
                                             pb::ProjectConfig* response) {
  if (grpc::Status denied = Authorize(*context, "UpdateProject", false); !denied.ok())
    return denied;
  return Answer(api_->UpdateProject(request->config()), response);
}

grpc::Status BuildServiceImpl::GetProject(grpc::ServerContext* context,
                                          const pb::GetProjectRequest* request,
                                          pb::GetProjectResponse* response) {
  if (grpc::Status denied = Authorize(*context, "GetProject", true); !denied.ok()) return denied;
  auto state = api_->GetProject(request->id());
  if (!state.ok()) return ToGrpc(state.status());
  *response->mutable_state() = *std::move(state);
  return grpc::Status::OK;
}

grpc::Status BuildServiceImpl::ListProjects(grpc::ServerContext* context,
                                            const pb::ListProjectsRequest* request,
                                            pb::ListProjectsResponse* response) {
  if (grpc::Status denied = Authorize(*context, "ListProjects", true); !denied.ok()) return denied;
  return Answer(api_->ListProjects(*request), response);
}

grpc::Status BuildServiceImpl::DeleteProject(grpc::ServerContext* context,
                                             const pb::DeleteProjectRequest* request,
                                             pb::DeleteProjectResponse*) {
  if (grpc::Status denied = Authorize(*context, "DeleteProject", false); !denied.ok())
    return denied;
  return ToGrpc(api_->DeleteProject(request->id()));
}

grpc::Status BuildServiceImpl::TriggerBuild(grpc::ServerContext* context,
                                            const pb::TriggerBuildRequest* request,
                                            pb::TriggerBuildResponse* response) {
  if (grpc::Status denied = Authorize(*context, "TriggerBuild", false); !denied.ok()) return denied;
  auto id = api_->TriggerBuild(*request, "api");
  if (!id.ok()) return ToGrpc(id.status());
  response->set_deployment_id(*id);
  return grpc::Status::OK;
}

grpc::Status BuildServiceImpl::ListDeployments(grpc::ServerContext* context,
                                               const pb::ListDeploymentsRequest* request,
                                               pb::ListDeploymentsResponse* response) {
  if (grpc::Status denied = Authorize(*context, "ListDeployments", true); !denied.ok())
    return denied;
  return Answer(api_->ListDeployments(*request), response);
}

grpc::Status BuildServiceImpl::GetDeployment(grpc::ServerContext* context,
                                             const pb::GetDeploymentRequest* request,
                                             pb::Deployment* response) {
  if (grpc::Status denied = Authorize(*context, "GetDeployment", true); !denied.ok()) return denied;
  return Answer(api_->GetDeployment(request->deployment_id()), response);
}

grpc::Status BuildServiceImpl::CancelDeployment(grpc::ServerContext* context,
                                                const pb::CancelDeploymentRpcRequest* request,
                                                pb::CancelDeploymentResponse*) {
  if (grpc::Status denied = Authorize(*context, "CancelDeployment", false); !denied.ok())
    return denied;
  return ToGrpc(api_->CancelDeployment(request->deployment_id(), request->reason()));
}

grpc::Status BuildServiceImpl::Rollback(grpc::ServerContext* context,
                                        const pb::RollbackRpcRequest* request,
                                        pb::RollbackResponse* response) {
  if (grpc::Status denied = Authorize(*context, "Rollback", false); !denied.ok()) return denied;
  auto id = api_->Rollback(request->project_id(), request->target_deployment_id());
  if (!id.ok()) return ToGrpc(id.status());
  response->set_deployment_id(*id);
  return grpc::Status::OK;
}

grpc::Status BuildServiceImpl::StopPreview(grpc::ServerContext* context,
                                           const pb::StopPreviewRequest* request,
                                           pb::StopPreviewResponse*) {
  if (grpc::Status denied = Authorize(*context, "StopPreview", false); !denied.ok()) return denied;
  return ToGrpc(api_->StopPreview(request->project_id(), request->branch()));
}

grpc::Status BuildServiceImpl::FollowLog(grpc::ServerContext* context,
                                         const pb::FollowLogRequest* request,
                                         grpc::ServerWriter<pb::LogChunk>* writer) {
  if (grpc::Status denied = Authorize(*context, "FollowLog", true); !denied.ok()) return denied;
  if (ProjectOfDeployment(request->deployment_id()).empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "deployment_id is not valid");
  }
  if (request->offset() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "offset must not be negative");
  }
  if (followers_.fetch_add(1) >= kMaxFollowers) {
    followers_.fetch_sub(1);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("at most ", kMaxFollowers, " logs are followed at once"));
  }
  struct Release {
    std::atomic<int>& n;
    ~Release() { n.fetch_sub(1); }
  } release{followers_};

  int64_t offset = request->offset();
  absl::Time give_up = absl::Now() + kMaxFollow;
  bool last = !request->follow();
  while (!context->IsCancelled()) {
    // Whether the run has closed, before reading: a read after the close gets everything.
    if (!last) {
      absl::StatusOr<PlatformApi::DeploymentRun> run =
          api_->DeploymentRunState(request->deployment_id());
      if (!run.ok()) return ToGrpc(run.status());
      if (*run == PlatformApi::DeploymentRun::kClosed) {
        last = true;
      } else if (*run == PlatformApi::DeploymentRun::kQueued) {
        if (absl::Now() > give_up) return grpc::Status::OK;
        absl::SleepFor(kQueuedPoll);
        continue;
      }
    }
    absl::StatusOr<int64_t> read = api_->ReadBuildLog(
        request->deployment_id(), offset, !last, last ? absl::Seconds(60) : kFollowSlice,
        [&](const pb::LogChunk& chunk) { return writer->Write(chunk); });
    if (absl::IsCancelled(read.status())) return grpc::Status::CANCELLED;
    if (!read.ok()) return ToGrpc(read.status());
    offset = *read;
    if (last) return grpc::Status::OK;
    if (absl::Now() > give_up) return grpc::Status::OK;
  }
  return grpc::Status::CANCELLED;
}

}  // namespace kiln::worker
