// The web console in headless Chromium (console_browser.mjs, puppeteer-core) against a real
// orchestrator and the console kiln-worker serves (tests/testutil/console_harness.h): this
// side plays the build (holds it, writes its log, lets it finish) and starts the deployments
// the page cancels, meeting the script at files in a control directory.
#include <catch2/catch.hpp>

#include <signal.h>

#include <cctype>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testutil/console_harness.h"
#include "tests/testutil/kiln_cli.h"

namespace kiln::worker::console {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kScriptTimeout = absl::Minutes(3);

// The first of `candidates` that is an executable file, or "".
std::string FindExecutable(std::vector<std::string> candidates) {
  for (const std::string& path : candidates) {
    if (!path.empty() && ::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

// Installs the pinned puppeteer-core into the build tree (npm ci, from the lock file) unless
// it is there for this lock file already. An error says why it could not (offline, say).
absl::Status InstallPuppeteer(const std::string& npm) {
  const fs::path source = KILN_BROWSER_SOURCE_DIR;
  const fs::path build = KILN_BROWSER_BUILD_DIR;
  const fs::path stamp = build / "node_modules" / ".kiln-lock";
  const std::string lock = testutil::ReadFile((source / "package-lock.json").string());
  if (fs::exists(build / "node_modules" / "puppeteer-core") && fs::exists(stamp) &&
      testutil::ReadFile(stamp.string()) == lock) {
    return absl::OkStatus();
  }
  for (const char* file : {"package.json", "package-lock.json", "console_browser.mjs"}) {
    fs::copy_file(source / file, build / file, fs::copy_options::overwrite_existing);
  }
  std::string out;
  auto code = testutil::RunCommand(npm,
                                   {"ci", "--prefix", build.string(), "--ignore-scripts",
                                    "--no-audit", "--no-fund", "--prefer-offline"},
                                   &out, absl::Minutes(3));
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::UnavailableError(absl::StrCat("npm ci failed:\n", out));
  std::ofstream(stamp) << lock;
  return absl::OkStatus();
}

void Write(const fs::path& file, const std::string& content) {
  std::ofstream out(file.string() + ".tmp");
  out << content;
  out.close();
  fs::rename(file.string() + ".tmp", file);  // whole, or not there yet
}

bool WaitForFile(const fs::path& file, testutil::Process& script) {
  return testutil::WaitFor([&] { return fs::exists(file) || !script.Running(); }, kScriptTimeout) &&
         fs::exists(file);
}

TEST_CASE("The web console in headless Chromium shows deployments live and acts on runs",
          "[console][browser]") {
  const std::string node =
      FindExecutable({Env("KILN_NODE"), "/usr/bin/node", "/usr/local/bin/node"});
  const std::string npm = FindExecutable({Env("KILN_NPM"), "/usr/bin/npm", "/usr/local/bin/npm"});
  const std::string chromium =
      FindExecutable({Env("KILN_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"});
  if (node.empty() || npm.empty() || chromium.empty()) {
    WARN(
        "SKIPPED: the browser test needs node, npm and chromium (make deps installs them); found "
        "node='"
        << node << "' npm='" << npm << "' chromium='" << chromium << "'");
    return;
  }
  if (absl::Status installed = InstallPuppeteer(npm); !installed.ok()) {
    WARN("SKIPPED: puppeteer-core could not be installed (offline?): " << installed.ToString());
    return;
  }
  // The script itself is always the source tree's.
  fs::copy_file(fs::path(KILN_BROWSER_SOURCE_DIR) / "console_browser.mjs",
                fs::path(KILN_BROWSER_BUILD_DIR) / "console_browser.mjs",
                fs::copy_options::overwrite_existing);

  // As many log streams as kiln-worker allows: a page left and the next one's may overlap.
  ConsoleHarness h(absl::Seconds(3), /*max_log_streams=*/4);
  testutil::TempDir control;
  const fs::path shots = fs::path(KILN_BROWSER_BUILD_DIR) / "screenshots";
  fs::create_directories(shots);

  // A deployment whose build runs until released, with a first line of output.
  h.p.agent.HoldBuilds(true);
  const std::string id = h.p.Push("main", fakes::Hex40("commit-1"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  h.AppendBuildLog(id, "step 1/2: compiling\n");

  // 10,000 more runs in the index, as the page times ask (nobody serves their queue:
  // they stay running).
  h.StartIdleWorkflows(10'000, "many-");

  // Chromium is started by the script, detached from it: if the script is killed (a failed
  // REQUIRE, a timeout), its browser would outlive the test. Every process naming this test's
  // profile directory is this test's.
  struct EndBrowser {
    std::string profile;
    ~EndBrowser() {
      for (const auto& [pid, cmdline] : testutil::ProcessesNaming(profile)) ::kill(pid, SIGKILL);
    }
  } end_browser{control.path() + "/chromium-profile"};
  const std::string url = absl::StrCat("http://127.0.0.1:", h.port(), "/");
  auto script =
      testutil::Process::Start(node,
                               {(fs::path(KILN_BROWSER_BUILD_DIR) / "console_browser.mjs").string(),
                                url, h.admin, chromium, control.path(), shots.string()},
                               control.path() + "/script.log");
  REQUIRE(script.ok());
  // Waits for the script to reach `name`; fails with what it printed when it stops first.
  auto reached = [&](const std::string& name) {
    if (!WaitForFile(fs::path(control.path()) / name, **script)) {
      FAIL("the browser script did not reach " << name << ":\n" << (*script)->Output());
    }
  };
  Write(fs::path(control.path()) / "building", id);

  // The page has the first line: the build writes more, then ends.
  reached("more-log");
  h.AppendBuildLog(id, "step 2/2: linking\n");
  reached("release");
  h.p.agent.HoldBuilds(false);
  const pb::Deployment ended = h.p.WaitEnded(id);
  REQUIRE(ended.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  // A preview of another branch, for the projects page (the same tree: deployed without a build).
  const std::string preview = h.p.Push("feature-x", fakes::Hex40("commit-1"));
  REQUIRE(h.p.WaitEnded(preview).state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  Write(fs::path(control.path()) / "preview", preview);
  std::vector<std::string> steps;
  for (const auto& step : ended.steps()) steps.push_back("\"" + step.name() + "\"");
  Write(fs::path(control.path()) / "steps", "[" + absl::StrJoin(steps, ",") + "]");

  // What `kiln workflow show` prints for the same run.
  std::string shown;
  INFO(shown);
  REQUIRE(testutil::KilnAt(h.p.orchestrator.address(),
                           {"--token", h.p.orchestrator.admin_token(), "workflow", "show", "--id",
                            DeploymentWorkflowId(id)},
                           &shown) == 0);
  Write(fs::path(control.path()) / "cli-history", shown);

  // Redeploy and roll back from the deployment's page: each a new deployment, checked here.
  reached("redeployed");
  const std::string redeployed = testutil::ReadFile(control.path() + "/redeployed");
  const pb::Deployment again = h.p.WaitEnded(redeployed);
  CHECK(again.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(again.commit_sha() == ended.commit_sha());
  CHECK(again.branch() == "main");
  Write(fs::path(control.path()) / "redeploy-checked", "");
  reached("rolled-back");
  const pb::Deployment back = h.p.WaitEnded(testutil::ReadFile(control.path() + "/rolled-back"));
  CHECK(back.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(back.rollback_of() == id);
  CHECK(back.image_digest() == ended.image_digest());
  Write(fs::path(control.path()) / "rollback-checked", "");

  // Signal and terminate from a workflow's page: one of the idle runs, checked with the engine.
  auto& engine = h.p.orchestrator.connection().workflow_service();
  Write(fs::path(control.path()) / "signal-workflow", "many-0");
  reached("signaled");
  auto history = testutil::GetHistory(engine, "many-0", "");
  REQUIRE(history.ok());
  int signals = 0;
  for (const api::HistoryEvent& event : history->events()) {
    if (event.event_type() != api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) continue;
    const auto& a = event.workflow_execution_signaled_event_attributes();
    CHECK(a.signal_name() == "poke");
    CHECK(a.identity() == "kiln-worker web console");
    REQUIRE(a.input().payloads_size() == 1);
    CHECK(a.input().payloads(0).data() == "{\"n\": 1}");
    ++signals;
  }
  CHECK(signals == 1);
  reached("terminated");
  {
    api::DescribeWorkflowExecutionRequest describe;
    describe.mutable_execution()->set_workflow_id("many-0");
    api::DescribeWorkflowExecutionResponse described;
    grpc::ClientContext context;
    REQUIRE(engine.DescribeWorkflowExecution(&context, describe, &described).ok());
    CHECK(described.workflow_execution_info().status() ==
          api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  }
  Write(fs::path(control.path()) / "terminate-checked", "");

  // Two more held builds, for the page to cancel: one from its deployment page, one from its
  // workflow page.
  // New trees, so each is built (a tree built before is deployed without a build).
  for (const char* commit : {"commit-2", "commit-3"}) {
    h.p.agent.SetRevision(fakes::Hex40(commit),
                          {fakes::Hex40(commit), fakes::Hex40(std::string("tree-") + commit)});
  }
  h.p.agent.HoldBuilds(true);
  const std::string to_cancel = h.p.Push("main", fakes::Hex40("commit-2"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  Write(fs::path(control.path()) / "cancel-deployment", to_cancel);
  reached("canceled-deployment");
  CHECK(h.p.WaitEnded(to_cancel).state() == pb::DEPLOYMENT_STATE_CANCELED);

  const std::string run_to_cancel = h.p.Push("main", fakes::Hex40("commit-3"));
  REQUIRE(testutil::WaitFor([&] { return h.p.agent.building(); }, fakes::kPlatformWait));
  Write(fs::path(control.path()) / "cancel-workflow", run_to_cancel);
  reached("canceled-workflow");
  CHECK(h.p.WaitEnded(run_to_cancel).state() == pb::DEPLOYMENT_STATE_CANCELED);

  auto code = (*script)->Wait(kScriptTimeout);
  REQUIRE(code.ok());
  INFO((*script)->Output());
  CHECK(*code == 0);
  WARN("page times with 10,000 workflows in the index:\n"
       << testutil::ReadFile((shots / "page-times.txt").string()));
  for (const char* shot :
       {"login.png", "deployments.png", "deployment.png", "projects.png", "workflows.png",
        "workflow.png", "workflow-running.png", "taskqueues.png"}) {
    INFO(shot);
    CHECK(fs::file_size(shots / shot) > 1000);
  }
}

}  // namespace
}  // namespace kiln::worker::console
