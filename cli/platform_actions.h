// The build platform's commands (`kiln project ...`, `kiln deploy`, `kiln deployment ...`,
// `kiln preview ...`), one function each, apart from flag parsing: each takes its options, a
// kiln.platform.v1.BuildService stub (an interface, so tests can fake the server) and where to
// write, and returns the process exit code (0 ok, 1 failed; usage errors never get here).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/rpc.h"
#include "kiln/platform/v1/build_service.grpc.pb.h"

namespace kiln::cli {

using BuildStub = platform::v1::BuildService::StubInterface;

// The project settings a command line gave; unset ones are left as they are.
struct ProjectFlags {
  std::optional<std::string> repository_url;
  std::optional<std::string> production_branch;
  // Given at least once: replaces the whole list.
  std::optional<std::vector<std::string>> branches;
  std::optional<std::string> context;
  std::optional<std::string> containerfile;
  // "K=V" each; given at least once: replaces every build arg.
  std::optional<std::vector<std::string>> build_args;
  std::optional<int> port;
  std::optional<std::string> health_path;
  std::optional<std::string> deploy_target;
  std::optional<std::string> build_network;
  std::optional<std::string> image_repository;
  std::optional<std::string> git_token_secret;
  std::optional<std::string> machine_provider;
  std::optional<std::string> machine_size;
};

// Writes the flags that were given into `config`. InvalidArgument for a build arg without
// "=" or with an empty name.
absl::Status ApplyProjectFlags(const ProjectFlags& flags, platform::v1::ProjectConfig* config);

struct ProjectCreateOptions {
  std::string id;
  ProjectFlags flags;
  // Empty: the server generates one.
  std::string webhook_secret;
  bool json = false;
};

struct ProjectUpdateOptions {
  std::string id;
  ProjectFlags flags;
  bool json = false;
};

struct ProjectGetOptions {
  std::string id;
  bool json = false;
};

// Upper bound of --limit, so one invocation cannot page through an unbounded list.
inline constexpr int kMaxPlatformListLimit = 10'000;

struct ProjectListOptions {
  int limit = 1000;
  bool json = false;
  // `--output json`: the list as one JSON array rather than an object a line.
  bool json_document = false;
};

struct DeployOptions {
  std::string project;
  std::string branch;
  // Empty: the branch's head.
  std::string commit;
  // Follow the log to the end; exit 0 only when the deployment SUCCEEDED.
  bool follow = false;
  // `--output json`: {"deploymentId": ...} instead of the bare id (not with --follow, whose
  // output is the log).
  bool json = false;
};

struct DeploymentListOptions {
  std::string project;
  std::string branch;
  platform::v1::DeploymentState state = platform::v1::DEPLOYMENT_STATE_UNSPECIFIED;
  int limit = 50;
  bool json = false;
  // `--output json`: the list as one JSON array rather than an object a line.
  bool json_document = false;
};

struct DeploymentGetOptions {
  std::string id;
  bool json = false;
};

struct DeploymentLogsOptions {
  std::string id;
  bool follow = false;
};

struct DeploymentCancelOptions {
  std::string id;
  std::string reason;
  bool json = false;
};

struct RollbackOptions {
  std::string project;
  std::string to;
  bool follow = false;
  // As DeployOptions::json.
  bool json = false;
};

struct PreviewStopOptions {
  std::string project;
  std::string branch;
};

// Prints the project, its webhook URL and its webhook secret (which is never shown again).
int CreateProject(BuildStub& stub, const ProjectCreateOptions& options, const Io& io);
// Reads the project's config (GetProject), applies the given flags, sends it; prints the result.
int UpdateProject(BuildStub& stub, const ProjectUpdateOptions& options, const Io& io);
int GetProject(BuildStub& stub, const ProjectGetOptions& options, const Io& io);
int ListProjects(BuildStub& stub, const ProjectListOptions& options, const Io& io);
int DeleteProject(BuildStub& stub, const std::string& id, const Io& io);

// Prints the new deployment's id; with `follow`, then its log and its outcome (see
// FollowDeployment).
int Deploy(BuildStub& stub, const DeployOptions& options, const Io& io);
int ListDeployments(BuildStub& stub, const DeploymentListOptions& options, const Io& io);
int GetDeployment(BuildStub& stub, const DeploymentGetOptions& options, const Io& io);
// Writes the deployment's log byte for byte; with `follow`, until the deployment ends, then its
// outcome as FollowDeployment (exit 0 only when it SUCCEEDED).
int PrintDeploymentLogs(BuildStub& stub, const DeploymentLogsOptions& options, const Io& io);
int CancelDeployment(BuildStub& stub, const DeploymentCancelOptions& options, const Io& io);
// Prints the new deployment's id; with `follow`, as Deploy.
int Rollback(BuildStub& stub, const RollbackOptions& options, const Io& io);
int StopPreview(BuildStub& stub, const PreviewStopOptions& options, const Io& io);

// Waits for the deployment to leave the queue, writes its log to `io.out` as it comes until it
// ends, then prints "deployment <id> SUCCEEDED: <url>" (exit 0) or reports its final state and
// error (exit 1).
int FollowDeployment(BuildStub& stub, const std::string& deployment_id, const Io& io);
// As above, for a deployment that may be unknown for `not_found_grace` (a new one): on a
// terminal (io.terminal), a live progress line stays under the log while it runs.
int FollowDeployment(BuildStub& stub, const std::string& deployment_id,
                     absl::Duration not_found_grace, const Io& io);

}  // namespace kiln::cli
