#include "worker/api/platform_api.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/json_scalar.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "common/status.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "sdk/converter.h"
#include "worker/workflows/platform.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;
using sdk::FromPayloadAt;
using sdk::ToPayloads;

constexpr size_t kMaxUrlBytes = 2048;
constexpr size_t kMaxBranchBytes = 255;
constexpr size_t kMaxPathBytes = 1024;
constexpr int kMaxBranches = 100;
constexpr int kMaxBuildArgs = 64;
constexpr size_t kMaxBuildArgBytes = 4096;
constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
// How long DeleteProject waits for the project's containers to stop.
constexpr absl::Duration kDeleteWait = absl::Minutes(2);

bool IsProjectId(const std::string& id) {
  if (id.empty() || id.size() > 63) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0);
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateBranch(const std::string& field, const std::string& branch) {
  if (branch.empty() || branch.size() > kMaxBranchBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a branch name of 1..255 bytes"));
  }
  for (unsigned char c : branch) {
    if (c < 0x20 || c == 0x7f || c == ' ' || c == '~' || c == '^' || c == ':' || c == '?' ||
        c == '*' || c == '[' || c == '\\') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": '", absl::CEscape(branch), "' is not a valid branch name"));
    }
  }
  if (absl::StrContains(branch, "..") || absl::StartsWith(branch, "/") ||
      absl::EndsWith(branch, "/") || absl::StartsWith(branch, "-") ||
      absl::EndsWith(branch, ".lock") || absl::StartsWith(branch, "refs/")) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", branch, "' is not a valid branch name"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRelativePath(const std::string& field, const std::string& path) {
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": longer than ", kMaxPathBytes));
  }
  if (absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be relative, got '", path, "'"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain '..'"));
    }
  }
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": contains NUL"));
  }
  return absl::OkStatus();
}

std::string Suffix(const std::string& seed) {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
  unsigned char bytes[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (seed.empty()) {
    RAND_bytes(bytes, 6);
  } else {
    EVP_Digest(seed.data(), seed.size(), bytes, &size, EVP_sha256(), nullptr);
  }
  std::string out;
  for (int i = 0; i < 6; ++i) out.push_back(kAlphabet[bytes[i] % 32]);
  return out;
}

std::string NewDeploymentId(const std::string& project, const std::string& commit,
                            const std::string& seed) {
  std::string short_commit =
      commit.size() >= 7 ? absl::AsciiStrToLower(commit.substr(0, 7)) : std::string("head");
  return absl::StrCat(project, "-", short_commit, "-", Suffix(seed));
}

std::string KeywordValue(const api::SearchAttributes& attributes, const std::string& name) {
  auto it = attributes.indexed_fields().find(name);
  if (it == attributes.indexed_fields().end()) return "";
  auto value = json::ParseString(it->second.data());
  return value.ok() ? *value : "";
}

std::string Quoted(const std::string& value) { return json::EncodeString(value); }

pb::DeploymentState ParseState(const std::string& name) {
  pb::DeploymentState state = pb::DEPLOYMENT_STATE_UNSPECIFIED;
  pb::DeploymentState_Parse(absl::StrCat("DEPLOYMENT_STATE_", name), &state);
  return state;
}

}  // namespace

absl::Status ValidateProjectConfig(const pb::ProjectConfig& config,
                                   const std::vector<std::string>& machine_providers) {
  if (!IsProjectId(config.id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: '", absl::CEscape(config.id()),
                     "' must be 1..63 characters of a-z, 0-9 and '-', not starting with '-'"));
  }
  if (config.repository_url().empty() || config.repository_url().size() > kMaxUrlBytes) {
    return absl::InvalidArgumentError("repository_url: must be set (at most 2048 bytes)");
  }
  if (config.branches_size() > kMaxBranches) {
    return absl::InvalidArgumentError(absl::StrCat("branches: at most ", kMaxBranches));
  }
  for (const std::string& branch : config.branches()) {
    RETURN_IF_ERROR(ValidateBranch("branches", branch));
  }
  if (!config.production_branch().empty()) {
    RETURN_IF_ERROR(ValidateBranch("production_branch", config.production_branch()));
  }
  RETURN_IF_ERROR(ValidateRelativePath("context", config.context()));
  RETURN_IF_ERROR(ValidateRelativePath("containerfile", config.containerfile()));
  if (config.build_args_size() > kMaxBuildArgs) {
    return absl::InvalidArgumentError(absl::StrCat("build_args: at most ", kMaxBuildArgs));
  }
  for (const auto& [name, value] : config.build_args()) {
    bool ok = !name.empty() && name.size() <= 128 && !absl::ascii_isdigit(name[0]);
    for (char c : name) ok = ok && (absl::ascii_isalnum(c) || c == '_');
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("build_args: '", absl::CEscape(name), "' is not a valid argument name"));
    }
    if (value.size() > kMaxBuildArgBytes) {
      return absl::InvalidArgumentError(absl::StrCat("build_args: ", name, " is too long"));
    }
  }
  for (char c : config.image_repository()) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' || c == '-' ||
          c == '/')) {
      return absl::InvalidArgumentError(absl::StrCat("image_repository: '",
                                                     config.image_repository(),
                                                     "' may use a-z, 0-9, '.', '_', '-', '/'"));
    }
  }
  if (config.image_repository().size() > 255) {
    return absl::InvalidArgumentError("image_repository: at most 255 characters");
  }
  const std::string& provider = config.machine_provider();
  if (!provider.empty() && std::find(machine_providers.begin(), machine_providers.end(),
                                     provider) == machine_providers.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "machine_provider: '", provider, "' is not one this worker offers (",
        absl::StrJoin(machine_providers, ", "), ")",
        provider == "microvm" ? "; kiln-worker offers microvm with --microvm-image" : ""));
  }
  const std::string& size = config.machine_size();
  if (!size.empty() && size != "small" && size != "medium" && size != "large") {
    return absl::InvalidArgumentError(
        absl::StrCat("machine_size: '", size, "' is not one of: small, medium, large"));
  }
  const std::string& target = config.deploy_target();
  if (!target.empty() && target != "none" && target != "podman") {
    return absl::InvalidArgumentError(
        absl::StrCat("deploy_target: '", target, "' is not one of: none, podman"));
  }
  if (target != "none" && (config.port() < 1024 || config.port() > 65535)) {
    return absl::InvalidArgumentError(
        "port: the production port, 1024..65535, is required unless deploy_target is none");
  }
  if (!config.health_path().empty() &&
      (config.health_path()[0] != '/' || config.health_path().size() > 1024 ||
       config.health_path().find_first_of(" \r\n\t") != std::string::npos)) {
    return absl::InvalidArgumentError("health_path: an absolute path such as /health");
  }
  const std::string& network = config.build_network();
  if (!network.empty() && network != "none" && network != "host") {
    return absl::InvalidArgumentError(
        absl::StrCat("build_network: '", network, "' is not one of: none, host"));
  }
  if (config.machine_wake_timeout_ms() < 0 || config.machine_wake_timeout_ms() > 600'000) {
    return absl::InvalidArgumentError("machine_wake_timeout_ms: 0..600000");
  }
  if (!config.git_token_secret().empty()) {
    for (char c : config.git_token_secret()) {
      if (!(absl::ascii_isalnum(c) || c == '_')) {
        return absl::InvalidArgumentError("git_token_secret: a secret name of A-Z, 0-9 and _");
      }
    }
  }
  return absl::OkStatus();
}

std::string ProjectOfDeployment(const std::string& deployment_id) {
  std::vector<std::string> parts = absl::StrSplit(deployment_id, '-');
  if (parts.size() < 3) return "";
  parts.resize(parts.size() - 2);
  std::string project = absl::StrJoin(parts, "-");
  return IsProjectId(project) ? project : "";
}

absl::StatusOr<std::unique_ptr<PlatformApi>> PlatformApi::Create(PlatformApiOptions options) {
  if (options.connection == nullptr) return absl::InvalidArgumentError("no connection");
  std::error_code ec;
  fs::create_directories(options.secrets_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", options.secrets_dir, ": ", ec.message()));
  }
  if (chmod(options.secrets_dir.c_str(), 0700) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot chmod ", options.secrets_dir, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<PlatformApi>(new PlatformApi(std::move(options)));
}

PlatformApi::PlatformApi(PlatformApiOptions options) : options_(std::move(options)) {
  rpc_.timeout = absl::Seconds(10);
}

std::string PlatformApi::SecretPath(const std::string& id) const {
  return absl::StrCat(options_.secrets_dir, "/", id);
}

absl::StatusOr<std::string> PlatformApi::ReadSecret(const std::string& id) {
  absl::MutexLock lock(&secrets_mu_);
  std::ifstream in(SecretPath(id));
  if (!in) return absl::NotFoundError(absl::StrCat("project ", id, " has no webhook secret"));
  std::string secret;
  std::getline(in, secret);
  return secret;
}

absl::Status PlatformApi::Signal(const std::string& project_id, const pb::ProjectEvent& event,
                                 const std::string& request_id) {
  api::SignalWorkflowExecutionRequest request;
  request.set_namespace_(options_.ns);
  request.mutable_workflow_execution()->set_workflow_id(ProjectWorkflowId(project_id));
  request.set_signal_name(kProjectEventSignal);
  *request.mutable_input() = ToPayloads(event);
  request.set_identity("kiln-worker/platform");
  request.set_request_id(request_id);
  api::SignalWorkflowExecutionResponse response;
  absl::Status status = sdk::CallWithRetry(
      rpc_, *RealClock::Default(), "SignalWorkflowExecution", [&](grpc::ClientContext* c) {
        return options_.connection->workflow_service().SignalWorkflowExecution(c, request,
                                                                               &response);
      });
  if (absl::IsNotFound(status)) {
    return absl::NotFoundError(absl::StrCat("no project '", project_id, "'"));
  }
  return status;
}

absl::StatusOr<api::Payloads> PlatformApi::Query(const std::string& workflow_id,
                                                 const std::string& query) {
  api::QueryWorkflowRequest request;
  request.set_namespace_(options_.ns);
  request.mutable_execution()->set_workflow_id(workflow_id);
  request.mutable_query()->set_query_type(query);
  api::QueryWorkflowResponse response;
  RETURN_IF_ERROR(
      sdk::CallWithRetry(rpc_, *RealClock::Default(), "QueryWorkflow", [&](grpc::ClientContext* c) {
        return options_.connection->workflow_service().QueryWorkflow(c, request, &response);
      }));
  return response.query_result();
}

absl::StatusOr<api::ListWorkflowExecutionsResponse> PlatformApi::List(
    const std::string& query, int32_t page_size, const std::string& page_token) {
  api::ListWorkflowExecutionsRequest list;
  list.set_namespace_(options_.ns);
  list.set_page_size(page_size <= 0 ? kDefaultPageSize : std::min(page_size, kMaxPageSize));
  list.set_next_page_token(page_token);
  list.set_query(query);
  api::ListWorkflowExecutionsResponse listed;
  // The orchestrator stops a List after examining a bounded number of runs and may answer an
  // empty page with a token (behind many newer runs that do not match): follow it, a bounded
  // number of times, so a caller never mistakes that page for the end.
  for (int call = 0; call < kMaxEmptyListPages; ++call) {
    listed.Clear();
    RETURN_IF_ERROR(sdk::CallWithRetry(
        rpc_, *RealClock::Default(), "ListWorkflowExecutions", [&](grpc::ClientContext* c) {
          return options_.connection->workflow_service().ListWorkflowExecutions(c, list, &listed);
        }));
    if (listed.executions_size() > 0 || listed.next_page_token().empty()) break;
    list.set_next_page_token(listed.next_page_token());
  }
  return listed;
}

absl::Status PlatformApi::RequireProject(const std::string& id) {
  if (!IsProjectId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("project id '", absl::CEscape(id), "' is not valid"));
  }
  api::DescribeWorkflowExecutionRequest request;
  request.set_namespace_(options_.ns);
  request.mutable_execution()->set_workflow_id(ProjectWorkflowId(id));
  api::DescribeWorkflowExecutionResponse response;
  absl::Status status = sdk::CallWithRetry(
      rpc_, *RealClock::Default(), "DescribeWorkflowExecution", [&](grpc::ClientContext* c) {
        return options_.connection->workflow_service().DescribeWorkflowExecution(c, request,
                                                                                 &response);
      });
  // A run that continued as new is the project going on (its next run is being started), not
  // a project that is gone.
  const auto run_status = response.workflow_execution_info().status();
  if (absl::IsNotFound(status) ||
      (status.ok() && run_status != api::WORKFLOW_EXECUTION_STATUS_RUNNING &&
       run_status != api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW)) {
    return absl::NotFoundError(absl::StrCat("no project '", id, "'"));
  }
  return status;
}

absl::StatusOr<pb::CreateProjectResponse> PlatformApi::CreateProject(
    const pb::CreateProjectRequest& request) {
  RETURN_IF_ERROR(ValidateProjectConfig(request.config(), options_.machine_providers));
  if (request.webhook_secret().size() > kMaxWebhookSecretBytes ||
      request.webhook_secret().find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("webhook_secret: at most 256 bytes on one line");
  }
  pb::ProjectConfig config = WithDefaults(request.config());
  std::string secret = request.webhook_secret();
  if (secret.empty()) {
    unsigned char bytes[24];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("RAND_bytes failed");
    secret = absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  }
  pb::ProjectState state;
  *state.mutable_config() = config;
  sdk::Client client(*options_.connection, {.identity = "kiln-worker/platform", .ns = options_.ns});
  sdk::StartWorkflowOptions start;
  start.id = ProjectWorkflowId(config.id());
  start.task_queue = kPlatformTaskQueue;
  start.id_conflict_policy = api::WORKFLOW_ID_CONFLICT_POLICY_FAIL;
  start.search_attributes[kAttrProjectId] = Keyword(config.id());
  start.search_attributes[kAttrRepository] = Keyword(config.repository_url());
  // The secret first: a project that exists has one.
  {
    absl::MutexLock lock(&secrets_mu_);
    std::string path = SecretPath(config.id());
    std::string tmp = path + ".tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp));
    std::string line = secret + "\n";
    bool written = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    written = fsync(fd) == 0 && written;
    close(fd);
    if (!written || rename(tmp.c_str(), path.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot write ", path));
    }
  }
  auto started = client.StartWorkflow(start, kProjectWorkflowType, ToPayloads(state));
  if (!started.ok()) {
    if (absl::IsAlreadyExists(started.status())) {
      return absl::AlreadyExistsError(absl::StrCat("project '", config.id(), "' exists"));
    }
    return started.status();
  }
  pb::CreateProjectResponse response;
  *response.mutable_config() = config;
  response.set_webhook_secret(secret);
  response.set_webhook_url(options_.webhook_url);
  return response;
}

absl::StatusOr<pb::ProjectConfig> PlatformApi::UpdateProject(const pb::ProjectConfig& config) {
  RETURN_IF_ERROR(ValidateProjectConfig(config, options_.machine_providers));
  RETURN_IF_ERROR(RequireProject(config.id()));
  pb::ProjectEvent event;
  *event.mutable_update_config() = WithDefaults(config);
  RETURN_IF_ERROR(Signal(config.id(), event, ""));
  return event.update_config();
}

absl::StatusOr<pb::ProjectState> PlatformApi::GetProject(const std::string& id) {
  RETURN_IF_ERROR(RequireProject(id));
  ASSIGN_OR_RETURN(api::Payloads answer, Query(ProjectWorkflowId(id), kStateQuery));
  return FromPayloadAt<pb::ProjectState>(answer, 0);
}

absl::StatusOr<pb::ListProjectsResponse> PlatformApi::ListProjects(
    const pb::ListProjectsRequest& request) {
  ASSIGN_OR_RETURN(api::ListWorkflowExecutionsResponse listed,
                   List(absl::StrCat("WorkflowType = ", Quoted(kProjectWorkflowType),
                                     " AND ExecutionStatus = \"Running\""),
                        request.page_size(), request.page_token()));
  pb::ListProjectsResponse response;
  for (const auto& info : listed.executions()) {
    pb::ProjectConfig* config = response.add_projects();
    config->set_id(KeywordValue(info.search_attributes(), kAttrProjectId));
    config->set_repository_url(KeywordValue(info.search_attributes(), kAttrRepository));
  }
  response.set_next_page_token(listed.next_page_token());
  return response;
}

absl::Status PlatformApi::DeleteProject(const std::string& id) {
  RETURN_IF_ERROR(RequireProject(id));
  pb::ProjectEvent event;
  event.set_delete_project(true);
  RETURN_IF_ERROR(Signal(id, event, ""));
  {
    absl::MutexLock lock(&secrets_mu_);
    std::error_code ec;
    fs::remove(SecretPath(id), ec);
  }
  // Answers once the project's workflow has stopped its deployment and containers and ended.
  sdk::Client client(*options_.connection, {.identity = "kiln-worker/platform", .ns = options_.ns});
  auto closed = client.GetResult({.workflow_id = ProjectWorkflowId(id)}, kDeleteWait);
  if (closed.ok()) return absl::OkStatus();
  if (absl::IsDeadlineExceeded(closed.status()) &&
      sdk::ClosedStatusOf(closed.status()) == api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED) {
    return absl::DeadlineExceededError(absl::StrCat(
        "project ", id, " is being deleted; its containers were not all stopped within ",
        absl::FormatDuration(kDeleteWait)));
  }
  return closed.status();
}

absl::StatusOr<std::string> PlatformApi::TriggerBuild(const pb::TriggerBuildRequest& request,
                                                      const std::string& trigger,
                                                      const std::string& message) {
  RETURN_IF_ERROR(ValidateBranch("branch", request.branch()));
  const std::string& commit = request.commit_sha();
  if (!commit.empty() && (commit.size() < 7 || commit.size() > 40 ||
                          !std::all_of(commit.begin(), commit.end(),
                                       [](char c) { return absl::ascii_isxdigit(c); }))) {
    return absl::InvalidArgumentError("commit_sha: 7..40 hex digits, or empty for the head");
  }
  if (request.request_id().size() > 200) {
    return absl::InvalidArgumentError("request_id: at most 200 bytes");
  }
  ASSIGN_OR_RETURN(pb::ProjectConfig config, [&]() -> absl::StatusOr<pb::ProjectConfig> {
    RETURN_IF_ERROR(RequireProject(request.project_id()));
    ASSIGN_OR_RETURN(api::Payloads answer,
                     Query(ProjectWorkflowId(request.project_id()), kConfigQuery));
    return FromPayloadAt<pb::ProjectConfig>(answer, 0);
  }());
  if (!BuildsBranch(config, request.branch())) {
    return absl::FailedPreconditionError(
        absl::StrCat("project ", config.id(), " does not build branch '", request.branch(),
                     "' (it builds ", absl::StrJoin(config.branches(), ", "), ")"));
  }
  std::string id = NewDeploymentId(
      config.id(), commit,
      request.request_id().empty() ? "" : absl::StrCat(trigger, ":", request.request_id()));
  pb::ProjectEvent event;
  pb::PushRequest* push = event.mutable_push();
  push->set_deployment_id(id);
  push->set_branch(request.branch());
  push->set_commit_sha(absl::AsciiStrToLower(commit));
  push->set_trigger(trigger);
  push->set_message(message);
  push->set_delivery_id(request.request_id());
  *push->mutable_received_time() = TimestampOf(absl::Now());
  RETURN_IF_ERROR(Signal(config.id(), event, id));
  return id;
}

absl::StatusOr<pb::ListDeploymentsResponse> PlatformApi::ListDeployments(
    const pb::ListDeploymentsRequest& request) {
  std::string query = absl::StrCat("WorkflowType = ", Quoted(kDeploymentWorkflowType));
  if (!request.project_id().empty()) {
    if (!IsProjectId(request.project_id())) {
      return absl::InvalidArgumentError("project_id: not a valid project id");
    }
    absl::StrAppend(&query, " AND ", kAttrProject, " = ", Quoted(request.project_id()));
  }
  if (!request.branch().empty()) {
    RETURN_IF_ERROR(ValidateBranch("branch", request.branch()));
    absl::StrAppend(&query, " AND ", kAttrBranch, " = ", Quoted(request.branch()));
  }
  if (request.state() != pb::DEPLOYMENT_STATE_UNSPECIFIED) {
    absl::StrAppend(&query, " AND ", kAttrStatus, " = ", Quoted(StateName(request.state())));
  }
  absl::StrAppend(&query, " ORDER BY StartTime DESC");
  ASSIGN_OR_RETURN(api::ListWorkflowExecutionsResponse listed,
                   List(query, request.page_size(), request.page_token()));
  pb::ListDeploymentsResponse response;
  for (const auto& info : listed.executions()) {
    const auto& attributes = info.search_attributes();
    pb::Deployment* d = response.add_deployments();
    d->set_id(KeywordValue(attributes, kAttrDeploymentId));
    d->set_project_id(KeywordValue(attributes, kAttrProject));
    d->set_branch(KeywordValue(attributes, kAttrBranch));
    d->set_commit_sha(KeywordValue(attributes, kAttrCommit));
    d->set_state(ParseState(KeywordValue(attributes, kAttrStatus)));
    d->set_image_digest(KeywordValue(attributes, kAttrImageDigest));
    d->set_superseded_by(KeywordValue(attributes, kAttrSupersededBy));
    d->set_workflow_id(info.execution().workflow_id());
    *d->mutable_created_time() = info.start_time();
    if (IsSet(info.close_time())) *d->mutable_finished_time() = info.close_time();
  }
  response.set_next_page_token(listed.next_page_token());
  return response;
}

absl::StatusOr<pb::Deployment> PlatformApi::GetDeployment(const std::string& deployment_id) {
  const std::string project = ProjectOfDeployment(deployment_id);
  if (project.empty() || deployment_id.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("deployment id '", absl::CEscape(deployment_id), "' is not valid"));
  }
  auto answer = Query(DeploymentWorkflowId(deployment_id), kStateQuery);
  if (answer.ok()) return FromPayloadAt<pb::Deployment>(*answer, 0);
  if (!absl::IsNotFound(answer.status())) return answer.status();
  // Not started (yet, or ever): the project knows it as queued or replaced.
  auto state = GetProject(project);
  if (state.ok()) {
    for (const auto& push : state->queue()) {
      if (push.deployment_id() != deployment_id) continue;
      pb::Deployment d;
      d.set_id(deployment_id);
      d.set_project_id(project);
      d.set_branch(push.branch());
      d.set_commit_sha(push.commit_sha());
      d.set_state(pb::DEPLOYMENT_STATE_QUEUED);
      d.set_trigger(push.trigger());
      *d.mutable_received_time() = push.received_time();
      return d;
    }
    for (const auto& d : state->recent()) {
      if (d.id() == deployment_id) return d;
    }
    if (state->active().id() == deployment_id) return state->active();
  }
  return absl::NotFoundError(absl::StrCat("no deployment '", deployment_id, "'"));
}

absl::Status PlatformApi::CancelDeployment(const std::string& deployment_id,
                                           const std::string& reason) {
  ASSIGN_OR_RETURN(pb::Deployment d, GetDeployment(deployment_id));
  if (d.state() == pb::DEPLOYMENT_STATE_SUCCEEDED || d.state() == pb::DEPLOYMENT_STATE_FAILED ||
      d.state() == pb::DEPLOYMENT_STATE_CANCELED) {
    return absl::FailedPreconditionError(
        absl::StrCat("deployment ", deployment_id, " has ended (", StateWord(d.state()), ")"));
  }
  pb::ProjectEvent event;
  event.mutable_cancel()->set_deployment_id(deployment_id);
  event.mutable_cancel()->set_reason(reason.substr(0, 1000));
  return Signal(d.project_id(), event, "");
}

absl::StatusOr<std::string> PlatformApi::Rollback(const std::string& project_id,
                                                  const std::string& target_deployment_id) {
  ASSIGN_OR_RETURN(pb::Deployment target, GetDeployment(target_deployment_id));
  if (target.project_id() != project_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("deployment ", target_deployment_id, " is not of project ", project_id));
  }
  // Only to what ran: a canceled deployment may have pushed its image before it stopped, a
  // failed one's may have failed its health check.
  if (target.state() != pb::DEPLOYMENT_STATE_SUCCEEDED || target.image_reference().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "deployment ", target_deployment_id, " did not succeed (", StateWord(target.state()),
        "): only a succeeded deployment's image is ", "rolled back to"));
  }
  RETURN_IF_ERROR(RequireProject(project_id));
  std::string id = NewDeploymentId(project_id, target.commit_sha(), "");
  pb::ProjectEvent event;
  pb::RollbackRequest* rollback = event.mutable_rollback();
  rollback->set_deployment_id(id);
  rollback->set_target_deployment_id(target_deployment_id);
  *rollback->mutable_received_time() = TimestampOf(absl::Now());
  rollback->set_branch(target.branch());
  rollback->set_commit_sha(target.commit_sha());
  rollback->set_image_digest(target.image_digest());
  rollback->set_image_reference(target.image_reference());
  RETURN_IF_ERROR(Signal(project_id, event, id));
  return id;
}

absl::Status PlatformApi::StopPreview(const std::string& project_id, const std::string& branch) {
  RETURN_IF_ERROR(ValidateBranch("branch", branch));
  ASSIGN_OR_RETURN(pb::ProjectState state, GetProject(project_id));
  if (branch == state.config().production_branch()) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", branch, "' is the production branch, not a preview"));
  }
  pb::ProjectEvent event;
  event.set_delete_branch(branch);
  return Signal(project_id, event, "");
}

absl::StatusOr<PlatformApi::DeploymentRun> PlatformApi::DeploymentRunState(
    const std::string& deployment_id) {
  api::DescribeWorkflowExecutionRequest describe;
  describe.set_namespace_(options_.ns);
  describe.mutable_execution()->set_workflow_id(DeploymentWorkflowId(deployment_id));
  api::DescribeWorkflowExecutionResponse described;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status status = options_.connection->workflow_service().DescribeWorkflowExecution(
      &context, describe, &described);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return DeploymentRun::kQueued;
  if (!status.ok()) return FromGrpc(status);
  return described.workflow_execution_info().status() == api::WORKFLOW_EXECUTION_STATUS_RUNNING
             ? DeploymentRun::kRunning
             : DeploymentRun::kClosed;
}

absl::StatusOr<int64_t> PlatformApi::ReadBuildLog(
    const std::string& deployment_id, int64_t offset, bool follow, absl::Duration timeout,
    const std::function<bool(const pb::LogChunk&)>& sink) {
  api::LogService::Stub logs(options_.connection->channel());
  api::ReadLogRequest read;
  read.set_namespace_(options_.ns);
  read.mutable_execution()->set_workflow_id(DeploymentWorkflowId(deployment_id));
  read.set_stream("build");
  read.set_from_offset(offset);
  read.set_follow(follow);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  auto reader = logs.ReadLog(&context, read);
  api::ReadLogResponse chunk;
  while (reader->Read(&chunk)) {
    pb::LogChunk out;
    out.set_offset(chunk.offset());
    out.set_data(chunk.data());
    offset = chunk.offset() + static_cast<int64_t>(chunk.data().size());
    if (!sink(out)) {
      context.TryCancel();
      (void)reader->Finish();  // Cancelled by us: its status says nothing more.
      return absl::CancelledError("the reader went away");
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
      status.error_code() != grpc::StatusCode::NOT_FOUND) {
    return FromGrpc(status);
  }
  return offset;
}

absl::StatusOr<std::vector<WebhookProject>> PlatformApi::WebhookProjects() {
  std::vector<WebhookProject> projects;
  pb::ListProjectsRequest request;
  request.set_page_size(kMaxProjects);
  // Every page: a page may end early (the orchestrator's scan bound), and a project missed
  // here would have its deliveries refused.
  for (int page = 0; page < kMaxProjects; ++page) {
    ASSIGN_OR_RETURN(pb::ListProjectsResponse listed, ListProjects(request));
    for (const pb::ProjectConfig& config : listed.projects()) {
      auto secret = ReadSecret(config.id());
      if (!secret.ok() || secret->empty()) continue;
      projects.push_back({config.id(), config.repository_url(), *secret});
    }
    if (listed.next_page_token().empty() || projects.size() >= kMaxProjects) break;
    request.set_page_token(listed.next_page_token());
  }
  return projects;
}

absl::StatusOr<std::string> PlatformApi::Push(const PushEvent& event) {
  pb::TriggerBuildRequest request;
  request.set_project_id(event.project_id);
  request.set_branch(event.branch);
  request.set_commit_sha(event.commit_sha);
  request.set_request_id(event.delivery_id);
  return TriggerBuild(request, "webhook", event.message);
}

absl::Status PlatformApi::DeleteBranch(const DeleteBranchEvent& event) {
  RETURN_IF_ERROR(ValidateBranch("branch", event.branch));
  RETURN_IF_ERROR(RequireProject(event.project_id));
  pb::ProjectEvent signal;
  signal.set_delete_branch(event.branch);
  return Signal(event.project_id, signal, absl::StrCat("webhook:", event.delivery_id));
}

}  // namespace kiln::worker
