// kiln.platform.v1.BuildService over gRPC: a thin adapter from the wire to PlatformApi (errors
// mapped to gRPC codes), plus FollowLog, which streams a deployment's log from the
// orchestrator's LogService. Followers are bounded (kMaxFollowers; RESOURCE_EXHAUSTED beyond):
// each holds one of the server's threads while it follows. Each call is admitted first
// (build_service_auth.h: admin, or read-only for the reads).
#pragma once

#include <atomic>

#include "kiln/platform/v1/build_service.grpc.pb.h"
#include "worker/api/build_service_auth.h"
#include "worker/api/platform_api.h"

namespace kiln::worker {

inline constexpr int kMaxFollowers = 32;

class BuildServiceImpl final : public pb::BuildService::Service {
 public:
  // `auth` null: every caller may call every method (tests that run the service in-process).
  explicit BuildServiceImpl(PlatformApi* api, const BuildServiceAuth* auth = nullptr)
      : api_(api), auth_(auth) {}

  grpc::Status CreateProject(grpc::ServerContext*, const pb::CreateProjectRequest* request,
                             pb::CreateProjectResponse* response) override;
  grpc::Status UpdateProject(grpc::ServerContext*, const pb::UpdateProjectRequest* request,
                             pb::ProjectConfig* response) override;
  grpc::Status GetProject(grpc::ServerContext*, const pb::GetProjectRequest* request,
                          pb::GetProjectResponse* response) override;
  grpc::Status ListProjects(grpc::ServerContext*, const pb::ListProjectsRequest* request,
                            pb::ListProjectsResponse* response) override;
  grpc::Status DeleteProject(grpc::ServerContext*, const pb::DeleteProjectRequest* request,
                             pb::DeleteProjectResponse* response) override;
  grpc::Status TriggerBuild(grpc::ServerContext*, const pb::TriggerBuildRequest* request,
                            pb::TriggerBuildResponse* response) override;
  grpc::Status ListDeployments(grpc::ServerContext*, const pb::ListDeploymentsRequest* request,
                               pb::ListDeploymentsResponse* response) override;
  grpc::Status GetDeployment(grpc::ServerContext*, const pb::GetDeploymentRequest* request,
                             pb::Deployment* response) override;
  grpc::Status CancelDeployment(grpc::ServerContext*, const pb::CancelDeploymentRpcRequest* request,
                                pb::CancelDeploymentResponse* response) override;
  grpc::Status Rollback(grpc::ServerContext*, const pb::RollbackRpcRequest* request,
                        pb::RollbackResponse* response) override;
  grpc::Status StopPreview(grpc::ServerContext*, const pb::StopPreviewRequest* request,
                           pb::StopPreviewResponse* response) override;
  grpc::Status FollowLog(grpc::ServerContext* context, const pb::FollowLogRequest* request,
                         grpc::ServerWriter<pb::LogChunk>* writer) override;

 private:
  grpc::Status Authorize(const grpc::ServerContext& context, std::string_view method,
                         bool read) const {
    return auth_ == nullptr ? grpc::Status::OK : auth_->Check(context, method, read);
  }

  PlatformApi* api_;
  const BuildServiceAuth* auth_;
  std::atomic<int> followers_{0};
};

}  // namespace kiln::worker
