// The build platform (kiln.platform.v1) as text: deployment state names and the --state flag
// values, short commits and digests, how long a deployment took, and the reports of
// `kiln project ...` and `kiln deployment ...`. Pure functions (`now` is passed in for ages),
// so every line can be tested without a server.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kiln/platform/v1/build_service.pb.h"
#include "kiln/platform/v1/platform.pb.h"

namespace kiln::cli {

// "SUCCEEDED", "BUILDING", ...; "UNKNOWN(42)" for a value this build does not know.
std::string DeploymentStateName(platform::v1::DeploymentState state);
// SUCCEEDED, FAILED and CANCELED: nothing more will happen to the deployment.
bool IsFinalState(platform::v1::DeploymentState state);

// The values --state accepts ("queued", ..., "canceled"), in the enum's order.
const std::vector<std::string>& DeploymentStateFlagValues();
// "succeeded" -> DEPLOYMENT_STATE_SUCCEEDED; anything else is an InvalidArgument naming it.
absl::StatusOr<platform::v1::DeploymentState> ParseDeploymentStateFlag(absl::string_view text);

// The first 7 characters of a commit; "-" when empty.
std::string ShortCommit(absl::string_view sha);
// "sha256:<64 hex>" -> its first 12 hex digits (as `podman images` shows); "-" when empty.
std::string ShortDigest(absl::string_view digest);
// How long something took, to a useful precision: "250ms", "12.3s", "1m30s".
std::string TookText(absl::Duration d);

// `kiln deployment list`: ID, BRANCH, COMMIT, STATE, IMAGE, STARTED (age), TOOK; a header even
// when empty.
std::string FormatDeploymentList(const std::vector<platform::v1::Deployment>& deployments,
                                 absl::Time now);
// `kiln deployment get`: the deployment's fields, then a table of its steps.
std::string FormatDeployment(const platform::v1::Deployment& deployment, absl::Time now);

// The live status under `kiln deploy logs -f` (cli/progress_line.h): id, state and time since
// it began, then the running step and its time, then the build's last line of output, e.g.
// "web-1a2b3c4-x7y8z9  BUILDING 42s | build 31s | STEP 3/7: RUN make".
std::string FormatProgressLine(const platform::v1::Deployment& deployment, absl::Time now);

// A project's settings, one "Label: value" line each (defaults shown as the server filled them).
std::string FormatProjectConfig(const platform::v1::ProjectConfig& config);
// `kiln project create`: the config, the webhook URL and the (shown once) webhook secret.
std::string FormatCreatedProject(const platform::v1::CreateProjectResponse& created);
// `kiln project get`: the config, production, previews, the queue, the active deployment and
// the recent ones.
std::string FormatProject(const platform::v1::ProjectState& state, absl::Time now);
// `kiln project list`: ID, REPOSITORY (what ListProjects returns of each project; `project get`
// shows the rest).
std::string FormatProjectList(const std::vector<platform::v1::ProjectConfig>& projects);

}  // namespace kiln::cli
