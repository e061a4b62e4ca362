// The platform in build terms: projects and deployments over the engine's workflows. Both
// kiln.platform.v1.BuildService (build_service.h) and the GitHub webhook endpoint
// (worker/http) drive it. It keeps nothing of its own but the projects' webhook secrets (files
// of mode 0600 under <secrets_dir>, never in a history): a project IS its ProjectWorkflow,
// a deployment its DeploymentWorkflow, and lists come from the engine's visibility index.
//
// Deployment ids are "<project>-<commit, 7 hex or 'head'>-<6 characters>", the last part
// derived from the caller's request id (a webhook's delivery id) when there is one: a
// retried call or a redelivery names the same deployment, and the project drops a push it
// has seen. Errors: kInvalidArgument (a bad field, named), kNotFound, kAlreadyExists,
// kFailedPrecondition, kUnavailable (the orchestrator).
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kiln/platform/v1/build_service.pb.h"
#include "kiln/platform/v1/platform.pb.h"
#include "sdk/client.h"
#include "sdk/connection.h"
#include "worker/http/webhook.h"

namespace kiln::worker {

namespace api = ::kiln::api::v1;

namespace pb = ::kiln::platform::v1;

inline constexpr int kMaxProjects = 1000;
// How many empty pages (the orchestrator's scan bound reached) one list follows.
inline constexpr int kMaxEmptyListPages = 100;
inline constexpr size_t kMaxWebhookSecretBytes = 256;

// Checks a project's config (the fields a user sets; defaults are filled in later), with the
// machine providers this worker offers.
absl::Status ValidateProjectConfig(const pb::ProjectConfig& config,
                                   const std::vector<std::string>& machine_providers = {"process"});
// The project a deployment id belongs to ("" when the id is malformed).
std::string ProjectOfDeployment(const std::string& deployment_id);

struct PlatformApiOptions {
  // Not owned.
  sdk::Connection* connection = nullptr;
  std::string ns;
  // Where webhook secrets are kept (created 0700).
  std::string secrets_dir;
  // Shown to users: where GitHub should deliver (e.g. http://127.0.0.1:7380/webhooks/github).
  std::string webhook_url;
  // The builder machine providers this worker offers (projects choose one).
  std::vector<std::string> machine_providers = {"process"};
};

class PlatformApi final : public WebhookBackend {
 public:
  static absl::StatusOr<std::unique_ptr<PlatformApi>> Create(PlatformApiOptions options);

  absl::StatusOr<pb::CreateProjectResponse> CreateProject(const pb::CreateProjectRequest& request);
  absl::StatusOr<pb::ProjectConfig> UpdateProject(const pb::ProjectConfig& config);
  absl::StatusOr<pb::ProjectState> GetProject(const std::string& id);
  absl::StatusOr<pb::ListProjectsResponse> ListProjects(const pb::ListProjectsRequest& request);
  absl::Status DeleteProject(const std::string& id);

  // `trigger`: "api" or "webhook"; `request_id` makes the call idempotent (may be empty).
  absl::StatusOr<std::string> TriggerBuild(const pb::TriggerBuildRequest& request,
                                           const std::string& trigger,
                                           const std::string& message = "");
  absl::StatusOr<pb::ListDeploymentsResponse> ListDeployments(
      const pb::ListDeploymentsRequest& request);
  absl::StatusOr<pb::Deployment> GetDeployment(const std::string& deployment_id);
  absl::Status CancelDeployment(const std::string& deployment_id, const std::string& reason);
  absl::StatusOr<std::string> Rollback(const std::string& project_id,
                                       const std::string& target_deployment_id);
  absl::Status StopPreview(const std::string& project_id, const std::string& branch);

  // WebhookBackend.
  absl::StatusOr<std::vector<WebhookProject>> WebhookProjects() override;
  absl::StatusOr<std::string> Push(const PushEvent& event) override;
  absl::Status DeleteBranch(const DeleteBranchEvent& event) override;

  sdk::Connection& connection() { return *options_.connection; }
  const std::string& ns() const { return options_.ns; }

  // Where a deployment's run is, for the log followers (BuildService.FollowLog, the console):
  // a log read after the run has closed gets everything there will be.
  enum class DeploymentRun { kQueued, kRunning, kClosed };
  // kQueued: no run yet (its workflow starts when its turn comes). The RPC's error otherwise.
  absl::StatusOr<DeploymentRun> DeploymentRunState(const std::string& deployment_id);
  // One read of a deployment's build log from `offset`, following new output for at most
  // `timeout` when `follow`, each chunk handed to `sink` in order. Returns the offset past the
  // last chunk; kCancelled when the sink refused a chunk. A read that ends at its deadline or
  // finds no log yet is not an error.
  absl::StatusOr<int64_t> ReadBuildLog(const std::string& deployment_id, int64_t offset,
                                       bool follow, absl::Duration timeout,
                                       const std::function<bool(const pb::LogChunk&)>& sink);

 private:
  explicit PlatformApi(PlatformApiOptions options);
  absl::Status Signal(const std::string& project_id, const pb::ProjectEvent& event,
                      const std::string& request_id);
  absl::StatusOr<api::Payloads> Query(const std::string& workflow_id, const std::string& query);
  // One page of the visibility query `query` (page size 0: the default; capped).
  absl::StatusOr<api::ListWorkflowExecutionsResponse> List(const std::string& query,
                                                           int32_t page_size,
                                                           const std::string& page_token);
  absl::Status RequireProject(const std::string& id);
  std::string SecretPath(const std::string& id) const;
  absl::StatusOr<std::string> ReadSecret(const std::string& id);

  PlatformApiOptions options_;
  sdk::RpcPolicy rpc_;
  absl::Mutex secrets_mu_;
};

}  // namespace kiln::worker
