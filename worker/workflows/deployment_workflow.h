// DeploymentWorkflow: one commit (or a rollback's image) made into a running deployment.
//
//   wake the project's machine (kiln-platform) → FetchSource on project/<id> → the build's
//   content key (context tree, Containerfile, config) → BuildImage → PushImage (both skipped
//   when the project built that content before: its digest is reused) → Deploy (kiln-platform)
//   → Housekeeping on project/<id> (after the deployment answers; a failure there is noted,
//   not fatal).
//
// A commit the project already built under the same settings skips the machine altogether;
// a rollback deploys the earlier image directly. A step on the machine that nobody picks up
// within its schedule-to-start timeout (the agent was asleep, or its wake failed) wakes the
// machine again and is retried, a bounded number of times.
//
// The "state" query answers the Deployment (current step, its progress, every step's timing);
// the search attributes (Project, Branch, Commit, Status, ImageDigest, SupersededBy,
// DeploymentId) follow each step, so deployments list and filter through visibility. A cancel
// (the project's, for a newer push on the branch: signal "superseded" first, naming it) cancels
// the running step and closes the run CANCELED; a failure closes it FAILED with the reason.
#pragma once

#include "absl/status/statusor.h"
#include "kiln/api/v1/common.pb.h"
#include "sdk/workflow.h"

namespace kiln::worker {

namespace api = ::kiln::api::v1;

sdk::Task<absl::StatusOr<api::Payloads>> DeploymentWorkflow(sdk::WorkflowContext& ctx,
                                                            api::Payloads input);

}  // namespace kiln::worker
