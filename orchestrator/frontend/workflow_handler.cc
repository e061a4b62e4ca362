#include "orchestrator/frontend/workflow_handler.h"

#include "common/version.h"

namespace kiln::orchestrator {

WorkflowHandler::WorkflowHandler(std::string data_dir)
    : data_dir_(std::move(data_dir)), start_time_(absl::Now()) {}

grpc::ServerUnaryReactor* WorkflowHandler::GetSystemInfo(
    grpc::CallbackServerContext* context, const kiln::api::v1::GetSystemInfoRequest* request,
    kiln::api::v1::GetSystemInfoResponse* response) {
  response->set_server_version(kVersion);
  response->mutable_start_time()->set_seconds(absl::ToUnixSeconds(start_time_));
  response->set_data_dir(data_dir_);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kiln::orchestrator
