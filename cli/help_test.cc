// Every command's --help ends with an example: the test builds the whole command tree as `kiln`
// does and walks it, so a command added without SetExamples fails here.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "cli/help.h"
#include "cli/platform_commands.h"
#include "cli/task_queue_commands.h"
#include "cli/workflow_commands.h"

namespace kiln::cli {
namespace {

// The commands with no subcommands of their own, by their full path ("kiln deploy trigger").
void CollectLeaves(const CLI::App& command, const std::string& path,
                   std::vector<std::pair<std::string, const CLI::App*>>* leaves) {
  const std::vector<const CLI::App*> children = command.get_subcommands({});
  if (children.empty()) leaves->emplace_back(path, &command);
  for (const CLI::App* child : children) {
    CollectLeaves(*child, path + " " + child->get_name(), leaves);
  }
}

TEST_CASE("Every kiln command's help has an example and the exit codes") {
  CLI::App app{"kiln", "kiln"};
  SetExamples(app, {"kiln workflow list"});
  WorkflowCommands workflow(app);
  TaskQueueCommands task_queue(app);
  PlatformCommands platform(app);
  std::vector<std::pair<std::string, const CLI::App*>> leaves;
  CollectLeaves(app, "kiln", &leaves);
  REQUIRE(leaves.size() >= 20);
  for (const auto& [path, command] : leaves) {
    INFO(path);
    CHECK(HasExamples(*command));
    const std::string help = command->help();
    CHECK(help.find("Examples:\n  " + path) != std::string::npos);
    CHECK(help.find(std::string(kExitCodesHelp)) != std::string::npos);
  }
}

TEST_CASE("A footer without an example line is not counted as one") {
  CLI::App command{"c", "c"};
  CHECK_FALSE(HasExamples(command));
  command.footer("Examples:\n");
  CHECK_FALSE(HasExamples(command));
  SetExamples(command, {"c run"});
  CHECK(HasExamples(command));
  CHECK(command.get_footer() ==
        std::string("Examples:\n  c run\n\n") + std::string(kExitCodesHelp));
}

}  // namespace
}  // namespace kiln::cli
