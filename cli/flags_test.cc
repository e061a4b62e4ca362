// Unit tests of the CLI's flag values (durations, statuses, --input encoding) and of the
// `kiln workflow` command line: what parses, and that a bad value is refused by name.
#include <catch2/catch.hpp>

#include "cli/flags.h"
#include "cli/payloads.h"
#include "cli/workflow_commands.h"

namespace kiln::cli {
namespace {

namespace api = ::kiln::api::v1;

TEST_CASE("Durations parse in absl's syntax and must be finite and above zero") {
  REQUIRE(ParsePositiveDuration("500ms").value() == absl::Milliseconds(500));
  REQUIRE(ParsePositiveDuration("10s").value() == absl::Seconds(10));
  REQUIRE(ParsePositiveDuration("5m").value() == absl::Minutes(5));
  REQUIRE(ParsePositiveDuration("1h").value() == absl::Hours(1));
  REQUIRE(ParsePositiveDuration("1h30m").value() == absl::Minutes(90));
  for (const char* bad : {"10", "10parsecs", "", "inf", "soon"}) {
    INFO(bad);
    auto parsed = ParsePositiveDuration(bad);
    REQUIRE_FALSE(parsed.ok());
    REQUIRE(std::string(parsed.status().message()) ==
            std::string("'") + bad + "' is not a duration like 500ms, 10s, 5m or 1h");
  }
  REQUIRE(std::string(ParsePositiveDuration("0s").status().message()) == "'0s' is not above zero");
  REQUIRE_FALSE(ParsePositiveDuration("-1s").ok());
}

TEST_CASE("Status flags are lower case with hyphens") {
  REQUIRE(ParseStatusFlag("running").value() == api::WORKFLOW_EXECUTION_STATUS_RUNNING);
  REQUIRE(ParseStatusFlag("timed-out").value() == api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT);
  REQUIRE(ParseStatusFlag("continued-as-new").value() ==
          api::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW);
  for (const auto& value : StatusFlagValues()) REQUIRE(ParseStatusFlag(value).ok());
  for (const char* bad : {"RUNNING", "timed_out", "unspecified", "done", ""}) {
    INFO(bad);
    REQUIRE_FALSE(ParseStatusFlag(bad).ok());
  }
}

TEST_CASE("Input that is JSON goes as json/plain, anything else as text/plain") {
  auto encoding = [](const std::string& text) {
    api::Payloads p = EncodeInput(text);
    REQUIRE(p.payloads_size() == 1);
    REQUIRE(p.payloads(0).data() == text);
    return p.payloads(0).metadata().at("encoding");
  };
  REQUIRE(encoding("2") == "json/plain");
  REQUIRE(encoding("{\"name\": \"x\"}") == "json/plain");
  REQUIRE(encoding("\"quoted\"") == "json/plain");
  REQUIRE(encoding("[1, 2]") == "json/plain");
  REQUIRE(encoding("hello world") == "text/plain");
  REQUIRE(encoding("{not json") == "text/plain");
  REQUIRE(encoding("") == "text/plain");
}

// Parses a `kiln` command line the way main() does; returns the CLI11 error text, or "".
std::string Parse(const std::string& line) {
  CLI::App app{"kiln", "kiln"};
  WorkflowCommands commands(app);
  app.require_subcommand(1);
  try {
    app.parse(line, /*program_name_included=*/false);
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("The workflow command line takes good values and names bad ones") {
  REQUIRE(Parse("workflow start --id w --type steps --task-queue q --input 2 --run-timeout 1m") ==
          "");
  REQUIRE(Parse("workflow list --status timed-out --limit 5 --json") == "");
  REQUIRE(Parse("workflow describe --id w --run r --json") == "");
  REQUIRE(Parse("workflow history --id w --follow") == "");
  REQUIRE(Parse("workflow result --id w --timeout 500ms") == "");
  REQUIRE(Parse("workflow terminate --id w --reason done") == "");
  REQUIRE(Parse("workflow logs --id w --run r --stream test --follow --from 10") == "");
  REQUIRE(Parse("workflow logs --id w --from -1") ==
          "--from: '-1' is not a byte offset (0 or more)");

  REQUIRE(Parse("workflow result --id w --timeout 10parsecs") ==
          "--timeout: '10parsecs' is not a duration like 500ms, 10s, 5m or 1h");
  REQUIRE(Parse("workflow list --status bogus").find("'bogus' is not a workflow status") !=
          std::string::npos);
  REQUIRE(Parse("workflow list --limit 0").find("--limit") != std::string::npos);
  REQUIRE(Parse("workflow describe").find("--id is required") != std::string::npos);
  REQUIRE(Parse("workflow start --id w --type t").find("--task-queue is required") !=
          std::string::npos);
  REQUIRE_FALSE(Parse("workflow").empty());  // a subcommand is required
}

}  // namespace
}  // namespace kiln::cli
