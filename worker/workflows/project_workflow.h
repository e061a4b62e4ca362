// ProjectWorkflow: one per project (id "project/<id>"), long-running; the project's config and
// the scheduler of its deployments. It takes one signal, "event" (ProjectEvent), so that pushes,
// config updates, branch deletions, rollbacks and cancels are handled in the order they came:
//   - push: a DeploymentWorkflow child for the commit, in its turn: one deployment per project
//     at a time (its machine runs one build at a time), rollbacks first, then pushes in order.
//     A newer push on a branch replaces that branch's push still waiting, and cancels that
//     branch's deployment still running (signal "superseded" naming the newer one, then a
//     cancel: it ends CANCELED, "superseded by <id>").
//   - delete_branch: the branch's queued push is dropped, its deployment canceled, its preview
//     stopped.
//   - rollback: the earlier deployment's image is redeployed (no build).
//   - delete_project: everything stops (running deployment, production, previews), and the
//     workflow completes.
// What it built (by content) goes to each deployment so the same content is not built twice.
// Queries "state" (ProjectState: queue, active, recent, production, previews) and "config".
// The run continues as new with its state after kProjectEventsPerRun events, at a moment
// when no deployment runs.
#pragma once

#include "absl/status/statusor.h"
#include "kiln/api/v1/common.pb.h"
#include "sdk/workflow.h"

namespace kiln::worker {

namespace api = ::kiln::api::v1;

sdk::Task<absl::StatusOr<api::Payloads>> ProjectWorkflow(sdk::WorkflowContext& ctx,
                                                         api::Payloads input);

}  // namespace kiln::worker
