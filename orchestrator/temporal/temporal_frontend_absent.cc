// The build found no Temporal .proto files (CMakeLists.txt): the frontend is not built in.
#include "orchestrator/temporal/temporal_frontend.h"

namespace kiln::orchestrator {

absl::StatusOr<std::unique_ptr<TemporalFrontend>> TemporalFrontend::Start(
    const TemporalFrontendOptions& options,
    kiln::api::v1::WorkflowService::CallbackService* engine) {
  return absl::UnimplementedError(
      "--temporal-listen: this kiln-orchestrator was built without the Temporal frontend (the "
      "build found no @temporalio/core-bridge .proto files: run `make deps`, then rebuild)");
}

bool TemporalFrontendBuiltIn() { return false; }

}  // namespace kiln::orchestrator
