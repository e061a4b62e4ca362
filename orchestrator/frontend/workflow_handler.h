// The WorkflowService frontend: validates requests, applies limits, and maps engine errors to
// gRPC codes. Uses gRPC's callback API so that waiting calls (long polls) hold no thread.
#pragma once

#include <string>

#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"

namespace kiln::orchestrator {

class WorkflowHandler final : public kiln::api::v1::WorkflowService::CallbackService {
 public:
  explicit WorkflowHandler(std::string data_dir);

  grpc::ServerUnaryReactor* GetSystemInfo(grpc::CallbackServerContext* context,
                                          const kiln::api::v1::GetSystemInfoRequest* request,
                                          kiln::api::v1::GetSystemInfoResponse* response) override;

 private:
  std::string data_dir_;
  absl::Time start_time_;
};

}  // namespace kiln::orchestrator
