// The platform's workflows (ProjectWorkflow, DeploymentWorkflow), its control-plane activities
// and PlatformApi against a real orchestrator, with the machine, the builder agent and the
// deploy target replaced by in-process fakes: what is under test is the scheduling — one
// deployment per project at a time, a newer push superseding the running one, skip by
// content and by commit, rollback, previews and their removal, a wake that never brings the
// agent up retried — not podman (tests/e2e does it all for real). The fakes and the in-process
// platform are in tests/testutil/fake_platform.h.
#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "sdk/client.h"
#include "tests/testutil/fake_platform.h"

namespace kiln::worker {
namespace {

constexpr absl::Duration kWait = fakes::kPlatformWait;

using fakes::Hex40;
using Platform = fakes::InProcessPlatform;

const std::string kSha1 = Hex40("commit-1");
const std::string kSha2 = Hex40("commit-2");
const std::string kSha3 = Hex40("commit-3");

TEST_CASE("A push deploys to production and the same content elsewhere skips the build",
          "[platform]") {
  Platform p;
  pb::CreateProjectRequest create;
  *create.mutable_config() = p.Config();
  auto created = p.api->CreateProject(create);
  INFO(created.status());
  REQUIRE(created.ok());
  CHECK(created->webhook_secret().size() == 48);
  CHECK(absl::IsAlreadyExists(p.api->CreateProject(create).status()));

  p.agent.SetRevision("main", {kSha1, Hex40("tree-1")});
  std::string first = p.Push("main", kSha1);
  pb::Deployment d = p.WaitEnded(first);
  REQUIRE(d.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(d.slot() == "production");
  CHECK(d.url() == "http://127.0.0.1:18080/");
  CHECK_FALSE(d.build_skipped());
  std::vector<std::string> steps;
  for (const auto& step : d.steps()) steps.push_back(step.name() + ":" + step.status());
  CHECK(steps == std::vector<std::string>{"wake:ok", "fetch:ok", "build:ok", "push:ok", "deploy:ok",
                                          "housekeeping:ok"});
  CHECK(p.target.ImageIn("production") == d.image_reference());
  CHECK(p.agent.builds() == 1);

  // Another commit with the same tree, on a preview branch: no build, the same image.
  p.agent.SetRevision("feature", {kSha2, Hex40("tree-1")});
  pb::Deployment same_tree = p.WaitEnded(p.Push("feature", kSha2));
  REQUIRE(same_tree.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(same_tree.build_skipped());
  CHECK(same_tree.image_digest() == d.image_digest());
  CHECK(same_tree.slot() == "preview-feature");
  CHECK(p.agent.builds() == 1);

  // The very same commit again: not even a fetch.
  int fetches = p.agent.fetches();
  pb::Deployment same_commit = p.WaitEnded(p.Push("main", kSha1));
  CHECK(same_commit.build_skipped());
  CHECK(p.agent.fetches() == fetches);

  // Listed through visibility, filtered by branch and state.
  pb::ListDeploymentsRequest list;
  list.set_project_id("web");
  list.set_branch("feature");
  auto listed = p.api->ListDeployments(list);
  REQUIRE(listed.ok());
  REQUIRE(listed->deployments_size() == 1);
  CHECK(listed->deployments(0).id() == same_tree.id());
  CHECK(listed->deployments(0).state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(listed->deployments(0).image_digest() == d.image_digest());

  // Deleting the branch stops its preview.
  REQUIRE(
      p.api->DeleteBranch({.delivery_id = "d-1", .project_id = "web", .branch = "feature"}).ok());
  CHECK(testutil::WaitFor([&] { return p.target.Stopped("preview-feature"); }, kWait));
  auto state = p.api->GetProject("web");
  REQUIRE(state.ok());
  CHECK(state->previews().empty());
  CHECK(state->production().id() == same_commit.id());
}

TEST_CASE("A newer push on a branch supersedes its running build while other branches wait",
          "[platform]") {
  Platform p;
  pb::CreateProjectRequest create;
  *create.mutable_config() = p.Config();
  REQUIRE(p.api->CreateProject(create).ok());
  p.agent.SetRevision(kSha1, {kSha1, Hex40("tree-1")});
  p.agent.SetRevision(kSha2, {kSha2, Hex40("tree-2")});
  p.agent.SetRevision(kSha3, {kSha3, Hex40("tree-3")});
  p.agent.HoldBuilds(true);

  std::string first = p.Push("main", kSha1);
  REQUIRE(testutil::WaitFor([&] { return p.agent.building(); }, kWait));
  std::string other = p.Push("feature", kSha3);  // Waits its turn.
  std::string second = p.Push("main", kSha2);
  pb::Deployment old = p.WaitEnded(first);
  CHECK(old.state() == pb::DEPLOYMENT_STATE_CANCELED);
  CHECK(old.superseded_by() == second);
  CHECK(old.error() == "superseded by " + second);
  CHECK(testutil::WaitFor([&] { return p.agent.cancelled_builds() == 1; }, kWait));

  p.agent.HoldBuilds(false);
  pb::Deployment next = p.WaitEnded(second);
  CHECK(next.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  pb::Deployment waited = p.WaitEnded(other);
  CHECK(waited.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  // In order: the feature push came before the second main push.
  CHECK(FromProto(waited.created_time()) <= FromProto(next.created_time()));

  // The superseded one says so in visibility.
  pb::ListDeploymentsRequest list;
  list.set_project_id("web");
  list.set_state(pb::DEPLOYMENT_STATE_CANCELED);
  auto listed = p.api->ListDeployments(list);
  REQUIRE(listed.ok());
  REQUIRE(listed->deployments_size() == 1);
  CHECK(listed->deployments(0).superseded_by() == second);

  // A rollback redeploys the first successful image, no build.
  int builds = p.agent.builds();
  auto rollback = p.api->Rollback("web", waited.id());
  INFO(rollback.status());
  REQUIRE(rollback.ok());
  pb::Deployment rolled = p.WaitEnded(*rollback);
  CHECK(rolled.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(rolled.rollback_of() == waited.id());
  CHECK(rolled.image_digest() == waited.image_digest());
  CHECK(p.agent.builds() == builds);
  CHECK(absl::IsFailedPrecondition(p.api->Rollback("web", old.id()).status()));
}

TEST_CASE("A wake that never brings the agent up is retried", "[platform]") {
  Platform p(/*dead_wakes=*/1);
  pb::CreateProjectRequest create;
  *create.mutable_config() = p.Config();
  REQUIRE(p.api->CreateProject(create).ok());
  p.agent.SetRevision(kSha1, {kSha1, Hex40("tree-1")});
  pb::Deployment d = p.WaitEnded(p.Push("main", kSha1));
  CHECK(d.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(p.machines.wakes() >= 2);
}

TEST_CASE("A project continues as new past its event bound and keeps its state", "[platform]") {
  Platform p;
  pb::CreateProjectRequest create;
  *create.mutable_config() = p.Config();
  REQUIRE(p.api->CreateProject(create).ok());
  p.agent.SetRevision(kSha1, {kSha1, Hex40("tree-1")});
  pb::Deployment built = p.WaitEnded(p.Push("main", kSha1));
  REQUIRE(built.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  sdk::Client client(p.orchestrator.connection());
  auto first_run = client.Describe({.workflow_id = "project/web"});
  REQUIRE(first_run.ok());

  // Config updates are events like any other: enough of them end the run.
  pb::ProjectConfig config = p.Config();
  for (int i = 0; i < kProjectEventsPerRun + 5; ++i) {
    config.set_health_path(absl::StrCat("/health/", i));
    auto updated = p.api->UpdateProject(config);
    INFO(i << ": " << updated.status());
    REQUIRE(updated.ok());
  }
  REQUIRE(testutil::WaitFor(
      [&] {
        auto now = client.Describe({.workflow_id = "project/web"});
        return now.ok() && now->workflow_execution_info().execution().run_id() !=
                               first_run->workflow_execution_info().execution().run_id();
      },
      absl::Seconds(60)));
  // The new run knows everything: the last config, production, what it built.
  REQUIRE(testutil::WaitFor(
      [&] {
        auto state = p.api->GetProject("web");
        return state.ok() &&
               state->config().health_path() == absl::StrCat("/health/", kProjectEventsPerRun + 4);
      },
      absl::Seconds(30)));
  auto state = p.api->GetProject("web");
  REQUIRE(state.ok());
  CHECK(state->production().id() == built.id());
  REQUIRE(state->known_builds_size() == 1);
  // So the same commit is still recognised: no fetch.
  int fetches = p.agent.fetches();
  pb::Deployment again = p.WaitEnded(p.Push("main", kSha1));
  CHECK(again.build_skipped());
  CHECK(p.agent.fetches() == fetches);
}

TEST_CASE("Bad project configs and ids are refused naming the field", "[platform]") {
  pb::ProjectConfig config;
  config.set_id("Web");
  config.set_repository_url("file:///x");
  config.set_port(8080);
  CHECK(absl::StrContains(ValidateProjectConfig(config).message(), "id:"));
  config.set_id("web");
  CHECK(ValidateProjectConfig(config).ok());
  config.set_context("../etc");
  CHECK(absl::StrContains(ValidateProjectConfig(config).message(), "context"));
  config.set_context("app");
  config.set_deploy_target("kubernetes");
  CHECK(absl::StrContains(ValidateProjectConfig(config).message(), "deploy_target"));
  config.set_deploy_target("podman");
  config.set_port(0);
  CHECK(absl::StrContains(ValidateProjectConfig(config).message(), "port"));
  config.set_deploy_target("none");
  CHECK(ValidateProjectConfig(config).ok());
  config.add_branches("bad branch");
  CHECK(absl::StrContains(ValidateProjectConfig(config).message(), "branches"));
  CHECK(ProjectOfDeployment("web-1234567-abcdef") == "web");
  CHECK(ProjectOfDeployment("my-app-head-abcdef") == "my-app");
  CHECK(ProjectOfDeployment("nope") == "");
}

}  // namespace
}  // namespace kiln::worker
