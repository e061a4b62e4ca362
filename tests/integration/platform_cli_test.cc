// The real `kiln` binary against the build platform: BuildService served from this process over
// the real workflows, activities and PlatformApi on a real kiln-orchestrator, with the builder
// agent, machines and deploy target faked (tests/testutil/fake_platform.h). Covers project
// create/get/update/list, deploy trigger --follow, deploy list/get/logs (-f with its outcome),
// rollback, and the exit codes of bad input (1, the field named) and usage errors (2).
#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/testutil/fake_platform.h"

namespace kiln::worker {
namespace {

using fakes::Hex40;
using testutil::BinaryPath;
using testutil::RunCommand;

// Runs `kiln --platform <address> args...`; returns the exit code, stdout and stderr in `out`.
int Kiln(const std::string& address, std::vector<std::string> args, std::string* out) {
  args.insert(args.begin(), {"--platform-address", address, "--token", "unused-here"});
  auto code = RunCommand(BinaryPath("kiln"), args, out, absl::Seconds(90));
  REQUIRE(code.ok());
  return *code;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::vector<std::string> Words(const std::string& line) {
  return absl::StrSplit(line, ' ', absl::SkipEmpty());
}

TEST_CASE("kiln project, deploy and deployment commands drive the build platform", "[platform]") {
  fakes::InProcessPlatform p;
  const std::string address = p.ServeBuildService();
  const std::string sha = Hex40("commit-1");
  p.agent.SetRevision("main", {sha, Hex40("tree-1")});
  std::string out;

  // Create: the project, its webhook URL and its secret, said to be shown once.
  REQUIRE(Kiln(address,
               {"project", "create", "--id", "web", "--repo", "file:///srv/git/web.git", "--port",
                "18080", "--health-path", "/health", "--build-arg", "MODE=prod"},
               &out) == 0);
  INFO(out);
  CHECK(absl::StrContains(out, "Created project web."));
  CHECK(absl::StrContains(out, "Build args:        MODE=prod\n"));
  CHECK(absl::StrContains(out, "Webhook URL:       http://127.0.0.1:1/webhooks/github\n"));
  CHECK(absl::StrContains(out, "Webhook secret:    "));
  CHECK(absl::StrContains(out, "shown only this once"));

  // Deploy and follow: the id first, the log, then the outcome with the URL; exit 0.
  REQUIRE(Kiln(address, {"deploy", "trigger", "web", "--branch", "main", "--follow"}, &out) == 0);
  std::vector<std::string> lines = Lines(out);
  REQUIRE(lines.size() >= 2);
  const std::string id = lines[0];
  CHECK(absl::StartsWith(id, "web-head-"));
  CHECK(absl::StartsWith(lines.back(), "Deployment " + id + " SUCCEEDED in "));
  CHECK(absl::EndsWith(lines.back(), ": http://127.0.0.1:18080/"));

  // The log on its own, whole.
  REQUIRE(Kiln(address, {"deployment", "logs", "--id", id}, &out) == 0);
  const std::string log = out;
  CHECK(!log.empty());

  // List: a row with the short commit, the state and the short digest.
  REQUIRE(Kiln(address, {"deploy", "list", "--project", "web"}, &out) == 0);
  lines = Lines(out);
  REQUIRE(lines.size() == 2);
  CHECK(Words(lines[0]) ==
        std::vector<std::string>{"ID", "BRANCH", "COMMIT", "STATE", "IMAGE", "STARTED", "TOOK"});
  std::vector<std::string> row = Words(lines[1]);
  REQUIRE(row.size() == 8);  // the age is two words ("2s ago")
  CHECK(row[0] == id);
  CHECK(row[1] == "main");
  CHECK(row[2] == sha.substr(0, 7));
  CHECK(row[3] == "SUCCEEDED");
  CHECK(row[4].size() == 12);
  REQUIRE(Kiln(address, {"deploy", "list", "--state", "failed"}, &out) == 0);
  CHECK(Lines(out).size() == 1);  // the header alone
  REQUIRE(Kiln(address, {"deployment", "list", "--branch", "main", "--json"}, &out) == 0);
  CHECK(Lines(out).size() == 1);
  CHECK(absl::StrContains(out, "\"id\":\"" + id + "\""));
  CHECK(absl::StrContains(out, "\"state\":\"DEPLOYMENT_STATE_SUCCEEDED\""));
  // --output json: the list is one array, an object a line; get is one object.
  REQUIRE(Kiln(address, {"--output", "json", "deploy", "list", "--project", "web"}, &out) == 0);
  CHECK(absl::StartsWith(out, "[\n{\"id\":\"" + id + "\","));
  CHECK(absl::EndsWith(out, "}\n]\n"));
  REQUIRE(Kiln(address, {"-o", "json", "deployment", "list", "--state", "failed"}, &out) == 0);
  CHECK(out == "[]\n");
  REQUIRE(Kiln(address, {"-o", "json", "deploy", "get", "--id", id}, &out) == 0);
  CHECK(absl::StartsWith(out, "{\n"));
  CHECK(absl::StrContains(out, "\"state\": \"DEPLOYMENT_STATE_SUCCEEDED\""));
  REQUIRE(Kiln(address, {"-o", "json", "project", "get", "--id", "web"}, &out) == 0);
  CHECK(absl::StartsWith(out, "{\n"));
  CHECK(absl::StrContains(out, "\"id\": \"web\""));
  REQUIRE(Kiln(address, {"-o", "json", "project", "list"}, &out) == 0);
  CHECK(absl::StartsWith(out, "[\n{"));
  CHECK(Lines(out).size() == 3);
  // Not found: exit 3.
  REQUIRE(Kiln(address, {"project", "get", "--id", "nope"}, &out) == 3);
  CHECK(out == "kiln: no project 'nope'\n");

  // Get: the fields and every step.
  REQUIRE(Kiln(address, {"deployment", "get", "--id", id}, &out) == 0);
  CHECK(absl::StrContains(out, "State:             SUCCEEDED\n"));
  CHECK(absl::StrContains(out, "URL:               http://127.0.0.1:18080/\n"));
  CHECK(absl::StrContains(out, "Commit:            " + sha));
  CHECK(absl::StrContains(out, "Steps (6):\n  STEP "));
  for (const char* step : {"wake", "fetch", "build", "push", "deploy", "housekeeping"}) {
    INFO(step);
    bool found = false;
    for (const auto& line : Lines(out)) {
      std::vector<std::string> words = Words(line);
      if (words.size() >= 2 && words[0] == step && words[1] == "ok") found = true;
    }
    CHECK(found);
  }

  // The project: production is this deployment, and it is among the recent ones.
  REQUIRE(Kiln(address, {"project", "get", "--id", "web"}, &out) == 0);
  CHECK(absl::StrContains(out, "Production:        http://127.0.0.1:18080/  " + id +
                                   " SUCCEEDED main@" + sha.substr(0, 7) + "\n"));
  CHECK(absl::StrContains(out, "Recent deployments (1):\n"));
  CHECK(absl::StrContains(out, "Port:              18080\n"));

  // Update changes only what is given; list shows the project.
  REQUIRE(Kiln(address, {"project", "update", "--id", "web", "--port", "18081"}, &out) == 0);
  CHECK(absl::StrContains(out, "Port:              18081\n"));
  CHECK(absl::StrContains(out, "Health path:       /health\n"));
  CHECK(absl::StrContains(out, "Build args:        MODE=prod\n"));
  REQUIRE(Kiln(address,
               {"project", "update", "--id", "web", "--branch", "main", "--branch", "release"},
               &out) == 0);
  CHECK(absl::StrContains(out, "Branches:          main, release\n"));
  CHECK(absl::StrContains(out, "Port:              18081\n"));
  REQUIRE(Kiln(address, {"project", "list"}, &out) == 0);
  lines = Lines(out);
  REQUIRE(lines.size() == 2);
  CHECK(Words(lines[1]) == std::vector<std::string>{"web", "file:///srv/git/web.git"});

  // A rollback to the deployment redeploys its image on the new port.
  REQUIRE(Kiln(address, {"deploy", "rollback", "--project", "web", "--to", id, "-f"}, &out) == 0);
  CHECK(absl::EndsWith(Lines(out).back(), ": http://127.0.0.1:18081/"));

  // For scripts: a trigger answers {"deploymentId": ...}.
  REQUIRE(Kiln(address, {"-o", "json", "deploy", "trigger", "web", "--branch", "main"}, &out) == 0);
  CHECK(absl::StartsWith(out, "{\"deploymentId\": \"web-head-"));
  const std::string json_id(
      absl::StripSuffix(absl::StripPrefix(out, "{\"deploymentId\": \""), "\"}\n"));
  p.WaitEnded(json_id);

  // A deployment that fails: its id, then exit 1 with its state and error.
  REQUIRE(Kiln(address,
               {"deploy", "trigger", "web", "--branch", "main", "--commit",
                Hex40("not-in-the-repository"), "--follow"},
               &out) == 1);
  lines = Lines(out);
  REQUIRE(lines.size() >= 2);
  CHECK(absl::StartsWith(lines.back(), "kiln: deployment " + lines[0] + " FAILED"));
  CHECK(absl::StrContains(lines.back(), "no revision"));
  // Following an ended deployment's log exits with its outcome too: 1 for the failed one, 0 for
  // the one that succeeded (`deployment` is the group's other name).
  const std::string failed_id = lines[0];
  REQUIRE(Kiln(address, {"deploy", "logs", "--id", failed_id, "--follow"}, &out) == 1);
  CHECK(absl::StartsWith(Lines(out).back(), "kiln: deployment " + failed_id + " FAILED"));
  REQUIRE(Kiln(address, {"deployment", "logs", "--id", id, "-f"}, &out) == 0);
  CHECK(absl::StartsWith(Lines(out).back(), "Deployment " + id + " SUCCEEDED"));

  // Values the server refuses: exit 2 naming the field; a missing project: exit 3; usage
  // errors CLI11 finds: exit 2.
  REQUIRE(Kiln(address, {"project", "create", "--id", "BAD", "--repo", "file:///x", "--port", "1"},
               &out) == 2);
  CHECK(absl::StartsWith(out, "kiln: id: "));
  REQUIRE(Kiln(address, {"deploy", "trigger", "nope", "--branch", "main"}, &out) == 3);
  CHECK(out == "kiln: no project 'nope'\n");
  REQUIRE(Kiln(address, {"deploy", "trigger", "web", "--branch", "main", "--commit", "xyz"},
               &out) == 2);
  CHECK(absl::StartsWith(out, "kiln: commit_sha: "));
  REQUIRE(Kiln(address, {"deployment", "list", "--state", "done"}, &out) == 2);
  REQUIRE(Kiln(address, {"deploy", "trigger", "--branch", "main"}, &out) == 2);
  CHECK(absl::StrContains(out, "kiln deploy trigger PROJECT --branch B"));
  REQUIRE(Kiln(address, {"deploy", "trigger", "web", "--project", "web", "--branch", "main"},
               &out) == 2);
  REQUIRE(Kiln(address, {"project", "create", "--id", "x"}, &out) == 2);  // --repo is required
  REQUIRE(Kiln(address, {"project", "create", "--id", "x", "--repo", "r", "--build-arg", "NOEQ"},
               &out) == 2);

  // Delete: the project is gone.
  REQUIRE(Kiln(address, {"project", "delete", "--id", "web"}, &out) == 0);
  CHECK(testutil::WaitFor(
      [&] {
        std::string listed;
        return Kiln(address, {"project", "list"}, &listed) == 0 && Lines(listed).size() == 1;
      },
      fakes::kPlatformWait));
}

TEST_CASE("kiln platform commands report an unreachable platform", "[platform]") {
  std::string out;
  const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  REQUIRE(Kiln(address, {"project", "list"}, &out) == 4);
  CHECK(absl::StartsWith(out, "kiln: cannot reach the build platform"));
}

}  // namespace
}  // namespace kiln::worker
