// The build platform's names and the small pure helpers its workflows share: workflow types
// and ids, task queues, activity types, search attributes, and what identifies a build's
// content. Everything here is deterministic (workflow code calls it).
#pragma once

#include <string>

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"
#include "kiln/api/v1/common.pb.h"
#include "kiln/platform/v1/platform.pb.h"
#include "worker/deploy/deploy_target.h"

namespace kiln::worker {

namespace api = ::kiln::api::v1;

namespace pb = ::kiln::platform::v1;

// The control plane's task queue: the platform's workflows and its own activities.
inline constexpr char kPlatformTaskQueue[] = "kiln-platform";
inline constexpr char kProjectWorkflowType[] = "kiln.ProjectWorkflow";
inline constexpr char kDeploymentWorkflowType[] = "kiln.DeploymentWorkflow";
// ProjectWorkflow's one signal (ProjectEvent) and its queries.
inline constexpr char kProjectEventSignal[] = "event";
inline constexpr char kStateQuery[] = "state";
inline constexpr char kConfigQuery[] = "config";
// DeploymentWorkflow's signal from its project: a newer push on its branch replaces it. The
// cancel that follows says the same in its reason (kSupersededCause + what the signal carries):
// the engine delivers the two on their own, and the cancel may arrive first.
inline constexpr char kSupersededSignal[] = "superseded";
inline constexpr char kSupersededCause[] = "superseded: ";

// Control-plane activities (served by kiln-worker on kPlatformTaskQueue).
inline constexpr char kWakeMachineActivity[] = "kiln.platform.WakeMachine";
inline constexpr char kDeployActivity[] = "kiln.platform.Deploy";
inline constexpr char kStopSlotActivity[] = "kiln.platform.StopSlot";

// Search attributes: projects carry ProjectId and Repository; deployments carry the rest.
inline constexpr char kAttrProjectId[] = "ProjectId";
inline constexpr char kAttrRepository[] = "Repository";
inline constexpr char kAttrProject[] = "Project";
inline constexpr char kAttrBranch[] = "Branch";
inline constexpr char kAttrCommit[] = "Commit";
// "Status" is the built-in alias of ExecutionStatus, so the deployment's own is named apart.
inline constexpr char kAttrStatus[] = "DeploymentStatus";
inline constexpr char kAttrImageDigest[] = "ImageDigest";
inline constexpr char kAttrSupersededBy[] = "SupersededBy";
inline constexpr char kAttrDeploymentId[] = "DeploymentId";

// Bounds on what a project's workflow keeps.
inline constexpr int kMaxRecentDeployments = 50;
inline constexpr int kMaxKnownBuilds = 64;
inline constexpr int kMaxQueuedPushes = 100;
inline constexpr int kMaxPreviews = 50;
// Events a project's run handles before it continues as new (at a quiet moment).
inline constexpr int kProjectEventsPerRun = 200;

std::string ProjectWorkflowId(const std::string& project);
std::string DeploymentWorkflowId(const std::string& deployment_id);
std::string ProjectTaskQueue(const std::string& project);

// The config with its defaults filled in (production branch "main", Containerfile, podman
// target, process machines, "/" health path, image repository kiln/<id>, build network none).
pb::ProjectConfig WithDefaults(pb::ProjectConfig config);

// The deploy slot of a branch: "production" for the production branch, else
// PreviewSlot(branch).
std::string SlotFor(const pb::ProjectConfig& config, const std::string& branch);

// Whether `branch` is built at all.
bool BuildsBranch(const pb::ProjectConfig& config, const std::string& branch);

// What a build of the project's config depends on besides the source (context, Containerfile
// path, build args, network), as a hex digest.
std::string ConfigKey(const pb::ProjectConfig& config);
// What identifies a build's content: the context's tree, the Containerfile's blob and
// ConfigKey. Empty when the tree is unknown.
std::string BuildKey(const pb::ProjectConfig& config, const std::string& tree_id,
                     const std::string& containerfile_id);

// "SUCCEEDED", "FAILED", …: the Status search attribute's value.
std::string StateName(pb::DeploymentState state);
// "succeeded", "building", … (what the CLI and the webhook answers show).
std::string StateWord(pb::DeploymentState state);

google::protobuf::Timestamp TimestampOf(absl::Time time);
google::protobuf::Duration DurationOf(absl::Duration duration);

// A Keyword search attribute.
api::Payload Keyword(const std::string& value);

}  // namespace kiln::worker
