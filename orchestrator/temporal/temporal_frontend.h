// Temporal's own gRPC API, temporal.api.workflowservice.v1.WorkflowService, served on a port of
// its own (--temporal-listen) so that Temporal's official SDKs run workflows on Kiln unchanged.
//
// It is a translator, not a second engine: each Temporal request becomes the engine's
// kiln.api.v1 request (most messages match field by field, by name; enums map by value name),
// goes straight to the engine's own WorkflowService handler, called in this process as gRPC
// would call it (the same Authorizer, validation, long polls and queries as a native call; it
// sees the Temporal call's own context: its `authorization` header, deadline and
// cancellation), and the answer is translated back.
// What Kiln does not have answers UNIMPLEMENTED naming the method. docs/temporal-api.md has the
// mapping.
//
// Built in only when the build found Temporal's .proto files (`make deps`,
// orchestrator/temporal/CMakeLists.txt); otherwise Start says it is not.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"

namespace kiln::orchestrator {

struct TemporalFrontendOptions {
  // host:port; port 0 picks one.
  std::string listen;
  // The same as the native listener's (TLS or not).
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // The namespaces DescribeNamespace knows and calls may name; each is the engine namespace of
  // the same name. Any other answers NOT_FOUND.
  std::vector<std::string> namespaces = {"default"};
  // How long closed runs are kept (DescribeNamespace reports it as the retention).
  absl::Duration retention = absl::Hours(72);
  std::string server_version;
};

class TemporalFrontend {
 public:
  // Serves on options.listen; `engine` is this process's kiln.api.v1.WorkflowService handler,
  // whose methods each Temporal call invokes directly (no gRPC channel between the two); it
  // must outlive the frontend. UNIMPLEMENTED when this build has no Temporal frontend.
  static absl::StatusOr<std::unique_ptr<TemporalFrontend>> Start(
      const TemporalFrontendOptions& options,
      kiln::api::v1::WorkflowService::CallbackService* engine);
  virtual ~TemporalFrontend() = default;

  virtual int port() const = 0;
  // Stops taking calls; running ones (long polls end when the engine's do) get up to `grace`.
  virtual void Shutdown(absl::Duration grace) = 0;
};

// Whether this build has the Temporal frontend (the .proto files were found).
bool TemporalFrontendBuiltIn();

}  // namespace kiln::orchestrator
