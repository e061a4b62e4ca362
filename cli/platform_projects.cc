// `kiln project create|update|get|list|delete`; see platform_actions.h.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/platform_actions.h"
#include "cli/platform_format.h"

namespace kiln::cli {

namespace pb = ::kiln::platform::v1;

namespace {
// The most the server returns in one page; asking for more only gets this many.
constexpr int kPageSize = 1000;

void SetText(const std::optional<std::string>& flag,
             void (pb::ProjectConfig::*setter)(const std::string&), pb::ProjectConfig* c) {
  if (flag.has_value()) (c->*setter)(*flag);
}
}  // namespace

absl::Status ApplyProjectFlags(const ProjectFlags& flags, pb::ProjectConfig* c) {
  SetText(flags.repository_url, &pb::ProjectConfig::set_repository_url, c);
  SetText(flags.production_branch, &pb::ProjectConfig::set_production_branch, c);
  SetText(flags.context, &pb::ProjectConfig::set_context, c);
  SetText(flags.containerfile, &pb::ProjectConfig::set_containerfile, c);
  SetText(flags.health_path, &pb::ProjectConfig::set_health_path, c);
  SetText(flags.deploy_target, &pb::ProjectConfig::set_deploy_target, c);
  SetText(flags.build_network, &pb::ProjectConfig::set_build_network, c);
  SetText(flags.image_repository, &pb::ProjectConfig::set_image_repository, c);
  SetText(flags.git_token_secret, &pb::ProjectConfig::set_git_token_secret, c);
  SetText(flags.machine_provider, &pb::ProjectConfig::set_machine_provider, c);
  SetText(flags.machine_size, &pb::ProjectConfig::set_machine_size, c);
  if (flags.port.has_value()) c->set_port(*flags.port);
  if (flags.branches.has_value()) {
    c->clear_branches();
    for (const auto& branch : *flags.branches) c->add_branches(branch);
  }
  if (flags.build_args.has_value()) {
    c->clear_build_args();
    for (const auto& arg : *flags.build_args) {
      const size_t eq = arg.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--build-arg: '", arg, "' is not NAME=VALUE"));
      }
      (*c->mutable_build_args())[arg.substr(0, eq)] = arg.substr(eq + 1);
    }
  }
  return absl::OkStatus();
}

int CreateProject(BuildStub& stub, const ProjectCreateOptions& options, const Io& io) {
  pb::CreateProjectRequest request;
  request.mutable_config()->set_id(options.id);
  absl::Status applied = ApplyProjectFlags(options.flags, request.mutable_config());
  if (!applied.ok()) return ReportError(io, std::string(applied.message()));
  request.set_webhook_secret(options.webhook_secret);
  pb::CreateProjectResponse response;
  grpc::Status status = stub.CreateProject(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, response, /*pretty=*/true);
  io.out << "Created project " << response.config().id() << ".\n\n"
         << FormatCreatedProject(response);
  return 0;
}

int UpdateProject(BuildStub& stub, const ProjectUpdateOptions& options, const Io& io) {
  pb::GetProjectRequest get;
  get.set_id(options.id);
  pb::GetProjectResponse current;
  grpc::Status status = stub.GetProject(CallContext(kCallTimeout).get(), get, &current);
  if (!status.ok()) return ReportError(io, status);
  pb::UpdateProjectRequest request;
  *request.mutable_config() = current.state().config();
  request.mutable_config()->set_id(options.id);
  absl::Status applied = ApplyProjectFlags(options.flags, request.mutable_config());
  if (!applied.ok()) return ReportError(io, std::string(applied.message()));
  pb::ProjectConfig updated;
  status = stub.UpdateProject(CallContext(kCallTimeout).get(), request, &updated);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, updated, /*pretty=*/true);
  io.out << "Updated project " << updated.id() << ".\n\n" << FormatProjectConfig(updated);
  return 0;
}

int GetProject(BuildStub& stub, const ProjectGetOptions& options, const Io& io) {
  pb::GetProjectRequest request;
  request.set_id(options.id);
  pb::GetProjectResponse response;
  grpc::Status status = stub.GetProject(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  if (options.json) return PrintJson(io, response, /*pretty=*/true);
  io.out << FormatProject(response.state(), absl::Now());
  return 0;
}

int ListProjects(BuildStub& stub, const ProjectListOptions& options, const Io& io) {
  const int limit = std::clamp(options.limit, 1, kMaxPlatformListLimit);
  std::vector<pb::ProjectConfig> projects;
  pb::ListProjectsRequest request;
  for (;;) {
    request.set_page_size(std::min(kPageSize, limit - static_cast<int>(projects.size())));
    pb::ListProjectsResponse response;
    grpc::Status status = stub.ListProjects(CallContext(kCallTimeout).get(), request, &response);
    if (!status.ok()) return ReportError(io, status);
    for (auto& p : *response.mutable_projects()) {
      if (static_cast<int>(projects.size()) >= limit) break;
      projects.push_back(std::move(p));
    }
    if (response.next_page_token().empty() || static_cast<int>(projects.size()) >= limit) break;
    request.set_page_token(response.next_page_token());
  }
  if (!options.json) {
    io.out << FormatProjectList(projects);
    return 0;
  }
  return PrintJsonList(io, projects, options.json_document);
}

int DeleteProject(BuildStub& stub, const std::string& id, const Io& io) {
  pb::DeleteProjectRequest request;
  request.set_id(id);
  pb::DeleteProjectResponse response;
  grpc::Status status = stub.DeleteProject(CallContext(kCallTimeout).get(), request, &response);
  if (!status.ok()) return ReportError(io, status);
  io.out << "Deleted project " << id << ": its deployments stop and its workflow ends.\n";
  return 0;
}

}  // namespace kiln::cli
