// The build platform's command groups on the CLI11 app (`kiln project ...`, `kiln deploy ...`
// (also named `deployment`), `kiln preview ...`): their subcommands and flags, and running
// whichever one the command line chose against kiln.platform.v1.BuildService (the work itself
// is in platform_actions.h).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "cli/platform_actions.h"
#include "cli/rpc.h"

namespace kiln::cli {

class PlatformCommands {
 public:
  // Adds the groups to `app`; the flags parse into this object, so it must outlive the parse.
  explicit PlatformCommands(CLI::App& app);
  PlatformCommands(const PlatformCommands&) = delete;
  PlatformCommands& operator=(const PlatformCommands&) = delete;

  // True when the parsed command line chose one of the platform's commands.
  bool parsed() const;
  // `--output json`: every command that prints a result prints JSON, lists as one array.
  void SetJsonOutput();
  // Runs the chosen subcommand; returns the exit code.
  int Run(BuildStub& stub, const Io& io) const;

 private:
  void AddProject(CLI::App& app);
  void AddDeployment(CLI::App& app);
  // The settings flags create and update share (--repo is required by create only).
  static void AddProjectFlags(CLI::App& command, ProjectFlags* flags, bool require_repo);

  CLI::App* project_ = nullptr;
  CLI::App* project_create_ = nullptr;
  CLI::App* project_update_ = nullptr;
  CLI::App* project_get_ = nullptr;
  CLI::App* project_list_ = nullptr;
  CLI::App* project_delete_ = nullptr;
  CLI::App* deploy_ = nullptr;
  CLI::App* deploy_trigger_ = nullptr;
  CLI::App* deployment_list_ = nullptr;
  CLI::App* deployment_get_ = nullptr;
  CLI::App* deployment_logs_ = nullptr;
  CLI::App* deployment_cancel_ = nullptr;
  CLI::App* deployment_rollback_ = nullptr;
  CLI::App* preview_ = nullptr;
  CLI::App* preview_stop_ = nullptr;
  ProjectCreateOptions create_options_;
  ProjectUpdateOptions update_options_;
  ProjectGetOptions get_options_;
  ProjectListOptions project_list_options_;
  std::string delete_id_;
  DeployOptions deploy_options_;
  DeploymentListOptions list_options_;
  DeploymentGetOptions deployment_get_options_;
  DeploymentLogsOptions logs_options_;
  DeploymentCancelOptions cancel_options_;
  RollbackOptions rollback_options_;
  PreviewStopOptions preview_stop_options_;
};

}  // namespace kiln::cli
