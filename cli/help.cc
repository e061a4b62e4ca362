// See help.h.
#include "cli/help.h"

namespace kiln::cli {

namespace {
constexpr std::string_view kExamplesHeading = "Examples:\n";
}  // namespace

void SetExamples(CLI::App& command, std::initializer_list<std::string_view> examples) {
  std::string footer(kExamplesHeading);
  for (std::string_view example : examples) {
    footer.append("  ").append(example).append("\n");
  }
  footer.append("\n").append(kExitCodesHelp);
  command.footer(footer);
}

bool HasExamples(const CLI::App& command) {
  const std::string footer = command.get_footer();
  const size_t heading = footer.find(kExamplesHeading);
  return heading != std::string::npos &&
         footer.compare(heading + kExamplesHeading.size(), 2, "  ") == 0;
}

}  // namespace kiln::cli
