// Flag definitions of the build platform's commands; see platform_commands.h.
#include "cli/platform_commands.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/help.h"
#include "cli/platform_format.h"

namespace kiln::cli {
namespace {

// Adds `--name VALUE` that sets `*out` only when given.
template <class T>
CLI::Option* AddOptional(CLI::App& command, const std::string& name, std::optional<T>* out,
                         const std::string& description) {
  return command.add_option_function<T>(
      name, [out](const T& value) { *out = value; }, description);
}

CLI::Validator BuildArgValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const size_t eq = value.find('=');
        if (eq == std::string::npos || eq == 0) return absl::StrCat("'", value, "' is not K=V");
        return "";
      },
      "K=V", "build arg");
}

CLI::Validator DeploymentStateValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto parsed = ParseDeploymentStateFlag(value);
        return parsed.ok() ? std::string() : std::string(parsed.status().message());
      },
      "STATE", "deployment state");
}

}  // namespace

PlatformCommands::PlatformCommands(CLI::App& app) {
  AddProject(app);
  AddDeployment(app);
}

void PlatformCommands::AddProjectFlags(CLI::App& command, ProjectFlags* flags, bool require_repo) {
  auto* repo = AddOptional(command, "--repo", &flags->repository_url,
                           "Repository: https://..., http://127.0.0.1..., file:///... or a path");
  if (require_repo) repo->required();
  AddOptional(command, "--production-branch", &flags->production_branch,
              "The branch deployed to the project's port (default main)");
  AddOptional(command, "--branch", &flags->branches,
              "A branch that is built (repeat for more; none given: every branch)");
  AddOptional(command, "--context", &flags->context,
              "Build context relative to the repository root (default the root)");
  AddOptional(command, "--containerfile", &flags->containerfile,
              "Containerfile relative to the context (default Containerfile)");
  AddOptional(command, "--build-arg", &flags->build_args, "K=V passed to the build (repeatable)")
      ->check(BuildArgValidator());
  AddOptional(command, "--port", &flags->port, "Production port on 127.0.0.1 (podman target)")
      ->check(CLI::Range(1, 65535));
  AddOptional(command, "--health-path", &flags->health_path,
              "Path answered with 2xx once the app is ready (default /)");
  AddOptional(command, "--deploy-target", &flags->deploy_target,
              "podman (run on this host, the default) or none (build and push only)")
      ->check(CLI::IsMember({"podman", "none"}));
  AddOptional(command, "--build-network", &flags->build_network,
              "What RUN steps reach: none (the default) or host")
      ->check(CLI::IsMember({"none", "host"}));
  AddOptional(command, "--image-repository", &flags->image_repository,
              "Repository in the registry (default kiln/<id>)");
  AddOptional(command, "--git-token-secret", &flags->git_token_secret,
              "Name of the agent's secret holding an HTTPS token for the repository");
  AddOptional(command, "--machine", &flags->machine_provider,
              "Builder machine: process (a local process, the default) or microvm (a QEMU "
              "microVM; kiln-worker --microvm-image)")
      ->check(CLI::IsMember({"process", "microvm"}));
  AddOptional(command, "--machine-size", &flags->machine_size,
              "Builder machine size: small (the default), medium or large")
      ->check(CLI::IsMember({"small", "medium", "large"}));
}

void PlatformCommands::AddProject(CLI::App& app) {
  project_ = app.add_subcommand("project", "Create, change, inspect and delete projects");
  project_->require_subcommand(1);

  project_create_ = project_->add_subcommand(
      "create", "Create a project; prints it, its webhook URL and its webhook secret");
  project_create_->add_option("--id", create_options_.id, "Project id: [a-z0-9][a-z0-9-]{0,62}")
      ->required();
  AddProjectFlags(*project_create_, &create_options_.flags, /*require_repo=*/true);
  project_create_->add_option("--webhook-secret", create_options_.webhook_secret,
                              "The secret GitHub signs deliveries with (default: generated)");
  project_create_->add_flag("--json", create_options_.json, "The CreateProjectResponse as JSON");
  SetExamples(*project_create_,
              {"kiln project create --id web --repo https://github.com/acme/web.git --port 8080",
               "kiln project create --id api --repo ./api --deploy-target none --branch main"});

  project_update_ = project_->add_subcommand(
      "update", "Change a project's settings: only the flags given change");
  project_update_->add_option("--id", update_options_.id, "Project id")->required();
  AddProjectFlags(*project_update_, &update_options_.flags, /*require_repo=*/false);
  project_update_->add_flag("--json", update_options_.json, "The new ProjectConfig as JSON");
  SetExamples(*project_update_, {"kiln project update --id web --health-path /healthz",
                                 "kiln project update --id web --build-arg VERSION=2"});

  project_get_ = project_->add_subcommand(
      "get", "Show a project: settings, production, previews, queue and recent deployments");
  project_get_->add_option("--id", get_options_.id, "Project id")->required();
  project_get_->add_flag("--json", get_options_.json, "The GetProjectResponse as JSON");
  SetExamples(*project_get_, {"kiln project get --id web", "kiln -o json project get --id web"});

  project_list_ = project_->add_subcommand("list", "List projects");
  project_list_->add_option("--limit", project_list_options_.limit, "Most projects to show")
      ->check(CLI::Range(1, kMaxPlatformListLimit))
      ->capture_default_str();
  project_list_->add_flag("--json", project_list_options_.json,
                          "One JSON object (ProjectConfig) a line");
  SetExamples(*project_list_, {"kiln project list", "kiln -o json project list --limit 10"});

  project_delete_ = project_->add_subcommand(
      "delete", "Delete a project: its deployments stop and its workflow ends");
  project_delete_->add_option("--id", delete_id_, "Project id")->required();
  SetExamples(*project_delete_, {"kiln project delete --id web"});
}

void PlatformCommands::AddDeployment(CLI::App& app) {
  // `deploy` was once only the trigger and `deployment` the rest: `deployment` stays a name
  // of the group, so `kiln deployment list` still works.
  deploy_ = app.add_subcommand(
      "deploy", "Build and deploy a branch, and inspect, follow, cancel and roll back deployments");
  deploy_->alias("deployment");
  deploy_->require_subcommand(1);

  deploy_trigger_ = deploy_->add_subcommand(
      "trigger", "Build and deploy a branch of a project; prints the deployment id");
  DeployOptions& t = deploy_options_;
  auto* project_positional = deploy_trigger_->add_option("project", t.project, "Project id");
  auto* project_flag = deploy_trigger_->add_option("--project", t.project, "Project id");
  project_positional->excludes(project_flag);
  deploy_trigger_->add_option("--branch", t.branch, "Branch to build")->required();
  deploy_trigger_->add_option("--commit", t.commit, "Commit SHA (default: the branch head)");
  deploy_trigger_->add_flag("--follow,-f", t.follow,
                            "Print the log until the deployment ends; exit 0 only if it SUCCEEDED");
  SetExamples(*deploy_trigger_,
              {"kiln deploy trigger web --branch main",
               "kiln deploy trigger web --branch main --commit 1a2b3c4 --follow"});

  deployment_list_ = deploy_->add_subcommand("list", "List deployments, newest first");
  DeploymentListOptions& l = list_options_;
  deployment_list_->add_option("--project", l.project, "Only this project");
  deployment_list_->add_option("--branch", l.branch, "Only this branch");
  deployment_list_
      ->add_option_function<std::string>(
          "--state",
          [&l](const std::string& value) { l.state = ParseDeploymentStateFlag(value).value(); },
          absl::StrCat("Only this state: ", absl::StrJoin(DeploymentStateFlagValues(), "|")))
      ->check(DeploymentStateValidator());
  deployment_list_->add_option("--limit", l.limit, "Most deployments to show")
      ->check(CLI::Range(1, kMaxPlatformListLimit))
      ->capture_default_str();
  deployment_list_->add_flag("--json", l.json, "One JSON object (Deployment) a line");
  SetExamples(*deployment_list_, {"kiln deploy list --project web",
                                  "kiln deploy list --project web --state failed --limit 5"});

  deployment_get_ = deploy_->add_subcommand("get", "Show a deployment and each of its steps");
  deployment_get_->add_option("--id", deployment_get_options_.id, "Deployment id")->required();
  deployment_get_->add_flag("--json", deployment_get_options_.json, "The Deployment as JSON");
  SetExamples(*deployment_get_, {"kiln deploy get --id web-1a2b3c4-x7y8z9"});

  deployment_logs_ = deploy_->add_subcommand(
      "logs", "Print a deployment's log (fetch, build, push, deploy, health)");
  deployment_logs_->add_option("--id", logs_options_.id, "Deployment id")->required();
  deployment_logs_->add_flag(
      "--follow,-f", logs_options_.follow,
      "Keep printing until the deployment ends; exit 0 only if it SUCCEEDED, else 1");
  SetExamples(*deployment_logs_, {"kiln deploy logs --id web-1a2b3c4-x7y8z9 --follow"});

  deployment_cancel_ = deploy_->add_subcommand("cancel", "Cancel a deployment");
  deployment_cancel_->add_option("--id", cancel_options_.id, "Deployment id")->required();
  deployment_cancel_->add_option("--reason", cancel_options_.reason, "Recorded with it");
  SetExamples(*deployment_cancel_,
              {"kiln deploy cancel --id web-1a2b3c4-x7y8z9 --reason 'wrong branch'"});

  deployment_rollback_ = deploy_->add_subcommand(
      "rollback", "Redeploy an earlier succeeded deployment's image; prints the new deployment id");
  deployment_rollback_->add_option("--project", rollback_options_.project, "Project id")
      ->required();
  deployment_rollback_
      ->add_option("--to", rollback_options_.to, "The earlier deployment's id (one that succeeded)")
      ->required();
  deployment_rollback_->add_flag("--follow,-f", rollback_options_.follow,
                                 "Print the log until it ends; exit 0 only if it SUCCEEDED");
  SetExamples(*deployment_rollback_,
              {"kiln deploy rollback --project web --to web-0f9e8d7-a1b2c3 --follow"});

  preview_ = app.add_subcommand("preview", "Manage a project's preview deployments");
  preview_->require_subcommand(1);
  preview_stop_ = preview_->add_subcommand("stop", "Stop a branch's preview");
  preview_stop_->add_option("--project", preview_stop_options_.project, "Project id")->required();
  preview_stop_->add_option("--branch", preview_stop_options_.branch, "Branch")->required();
  SetExamples(*preview_stop_, {"kiln preview stop --project web --branch feature-x"});
}

void PlatformCommands::SetJsonOutput() {
  create_options_.json = true;
  update_options_.json = true;
  get_options_.json = true;
  project_list_options_.json = project_list_options_.json_document = true;
  list_options_.json = list_options_.json_document = true;
  deployment_get_options_.json = true;
  deploy_options_.json = true;
  rollback_options_.json = true;
  cancel_options_.json = true;
}

bool PlatformCommands::parsed() const {
  return project_->parsed() || deploy_->parsed() || preview_->parsed();
}

int PlatformCommands::Run(BuildStub& stub, const Io& io) const {
  if (project_create_->parsed()) return CreateProject(stub, create_options_, io);
  if (project_update_->parsed()) return UpdateProject(stub, update_options_, io);
  if (project_get_->parsed()) return GetProject(stub, get_options_, io);
  if (project_list_->parsed()) return ListProjects(stub, project_list_options_, io);
  if (project_delete_->parsed()) return DeleteProject(stub, delete_id_, io);
  if (deploy_trigger_->parsed()) return Deploy(stub, deploy_options_, io);
  if (deployment_list_->parsed()) return ListDeployments(stub, list_options_, io);
  if (deployment_get_->parsed()) return GetDeployment(stub, deployment_get_options_, io);
  if (deployment_logs_->parsed()) return PrintDeploymentLogs(stub, logs_options_, io);
  if (deployment_cancel_->parsed()) return CancelDeployment(stub, cancel_options_, io);
  if (deployment_rollback_->parsed()) return Rollback(stub, rollback_options_, io);
  if (preview_stop_->parsed()) return StopPreview(stub, preview_stop_options_, io);
  return 2;  // require_subcommand(1) makes this unreachable
}

}  // namespace kiln::cli
