// Unit tests of the build platform's text output (state names, short commits and digests,
// durations, the deployment table and reports, the project report) and of how project flags
// apply to a config. No server involved.
#include <catch2/catch.hpp>

#include "cli/platform_actions.h"
#include "cli/platform_format.h"
#include "common/proto_time.h"

namespace kiln::cli {
namespace {

namespace pb = ::kiln::platform::v1;

const absl::Time kT0 = absl::FromUnixMillis(1795788000123);  // 2026-11-27T14:00:00.123Z
const std::string kSha = "0123456789abcdef0123456789abcdef01234567";
const std::string kDigest =
    "sha256:aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp out;
  ToProto(t, &out);
  return out;
}

pb::Deployment Done(const std::string& id, pb::DeploymentState state, absl::Duration took) {
  pb::Deployment d;
  d.set_id(id);
  d.set_project_id("web");
  d.set_branch("main");
  d.set_commit_sha(kSha);
  d.set_state(state);
  *d.mutable_created_time() = Ts(kT0);
  *d.mutable_finished_time() = Ts(kT0 + took);
  return d;
}

TEST_CASE("Deployment states print bare and parse from lower case") {
  REQUIRE(DeploymentStateName(pb::DEPLOYMENT_STATE_SUCCEEDED) == "SUCCEEDED");
  REQUIRE(DeploymentStateName(pb::DEPLOYMENT_STATE_QUEUED) == "QUEUED");
  REQUIRE(DeploymentStateName(static_cast<pb::DeploymentState>(42)) == "UNKNOWN(42)");
  REQUIRE(IsFinalState(pb::DEPLOYMENT_STATE_CANCELED));
  REQUIRE_FALSE(IsFinalState(pb::DEPLOYMENT_STATE_DEPLOYING));
  REQUIRE(DeploymentStateFlagValues() ==
          std::vector<std::string>{"queued", "waking", "fetching", "building", "pushing",
                                   "deploying", "succeeded", "failed", "canceled"});
  REQUIRE(ParseDeploymentStateFlag("failed").value() == pb::DEPLOYMENT_STATE_FAILED);
  REQUIRE_FALSE(ParseDeploymentStateFlag("FAILED").ok());
  REQUIRE_FALSE(ParseDeploymentStateFlag("unspecified").ok());
  REQUIRE(ParseDeploymentStateFlag("done").status().message() ==
          "'done' is not a deployment state (queued, waking, fetching, building, pushing, "
          "deploying, succeeded, failed, canceled)");
}

TEST_CASE("Commits, digests and durations print short") {
  REQUIRE(ShortCommit(kSha) == "0123456");
  REQUIRE(ShortCommit("abc") == "abc");
  REQUIRE(ShortCommit("") == "-");
  REQUIRE(ShortDigest(kDigest) == "aabbccddeeff");
  REQUIRE(ShortDigest("") == "-");
  REQUIRE(TookText(absl::Microseconds(250'400)) == "250ms");
  REQUIRE(TookText(absl::Milliseconds(12'345)) == "12.3s");
  REQUIRE(TookText(absl::Milliseconds(90'900)) == "1m30s");
  REQUIRE(TookText(absl::Seconds(-1)) == "0");
}

TEST_CASE("The deployment list is a table with a row per deployment") {
  pb::Deployment ok =
      Done("web-0123456-aaaaaa", pb::DEPLOYMENT_STATE_SUCCEEDED, absl::Milliseconds(1500));
  ok.set_image_digest(kDigest);
  pb::Deployment running;
  running.set_id("web-head-bbbbbb");
  running.set_branch("feature-x");
  running.set_state(pb::DEPLOYMENT_STATE_BUILDING);
  *running.mutable_created_time() = Ts(kT0 + absl::Seconds(50));
  pb::Deployment queued;
  queued.set_id("web-head-cccccc");
  queued.set_branch("main");
  queued.set_state(pb::DEPLOYMENT_STATE_QUEUED);
  *queued.mutable_received_time() = Ts(kT0 + absl::Seconds(59));
  REQUIRE(FormatDeploymentList({ok, running, queued}, kT0 + absl::Minutes(1)) ==
          "ID                  BRANCH     COMMIT   STATE      IMAGE         STARTED  TOOK\n"
          "web-0123456-aaaaaa  main       0123456  SUCCEEDED  aabbccddeeff  1m ago   1.5s\n"
          "web-head-bbbbbb     feature-x  -        BUILDING   -             10s ago  -\n"
          "web-head-cccccc     main       -        QUEUED     -             1s ago   -\n");
  REQUIRE(FormatDeploymentList({}, kT0) == "ID  BRANCH  COMMIT  STATE  IMAGE  STARTED  TOOK\n");
}

TEST_CASE("A deployment shows its fields and every step") {
  pb::Deployment d = Done("web-0123456-aaaaaa", pb::DEPLOYMENT_STATE_CANCELED, absl::Seconds(3));
  d.set_error("superseded by web-89abcde-bbbbbb");
  d.set_superseded_by("web-89abcde-bbbbbb");
  d.set_trigger("api");
  d.set_slot("production");
  d.set_message("Fix the header");
  d.set_progress("step 2/3");  // Not shown once the deployment has ended.
  auto* wake = d.add_steps();
  wake->set_name("wake");
  wake->set_status("ok");
  *wake->mutable_duration() = google::protobuf::Duration();
  wake->mutable_duration()->set_nanos(12'000'000);
  wake->set_detail("machine started (pid 4242)");
  auto* build = d.add_steps();
  build->set_name("build");
  build->set_status("canceled");
  REQUIRE(FormatDeployment(d, kT0 + absl::Minutes(1)) ==
          "ID:                web-0123456-aaaaaa\n"
          "Project:           web\n"
          "Branch:            main\n"
          "Commit:            " +
              kSha +
              " Fix the header\n"
              "State:             CANCELED\n"
              "Error:             superseded by web-89abcde-bbbbbb\n"
              "Superseded by:     web-89abcde-bbbbbb\n"
              "Trigger:           api\n"
              "Slot:              production\n"
              "URL:               -\n"
              "Image:             -\n"
              "Received:          -\n"
              "Started:           2026-11-27T14:00:00.123Z\n"
              "Finished:          2026-11-27T14:00:03.123Z (took 3s)\n"
              "\n"
              "Steps (2):\n"
              "  STEP   STATUS    DURATION  DETAIL\n"
              "  wake   ok        12ms      machine started (pid 4242)\n"
              "  build  canceled  -\n");

  pb::Deployment running;
  running.set_id("web-head-bbbbbb");
  running.set_state(pb::DEPLOYMENT_STATE_BUILDING);
  running.set_progress("STEP 2/3: RUN make");
  auto* step = running.add_steps();
  step->set_name("build");
  step->set_status("running");
  *step->mutable_started_time() = Ts(kT0);
  const std::string text = FormatDeployment(running, kT0 + absl::Seconds(4));
  REQUIRE(text.find("Progress:          STEP 2/3: RUN make\n") != std::string::npos);
  REQUIRE(text.find("  build  running  4s so far\n") != std::string::npos);
}

TEST_CASE("A project shows its settings, production, previews, queue and recent deployments") {
  pb::ProjectState s;
  pb::ProjectConfig* c = s.mutable_config();
  c->set_id("web");
  c->set_repository_url("file:///srv/git/web.git");
  c->set_production_branch("main");
  (*c->mutable_build_args())["B"] = "two words";
  (*c->mutable_build_args())["A"] = "1";
  c->set_port(8080);
  c->set_health_path("/health");
  pb::Deployment prod =
      Done("web-0123456-aaaaaa", pb::DEPLOYMENT_STATE_SUCCEEDED, absl::Seconds(2));
  prod.set_url("http://127.0.0.1:8080/");
  *s.mutable_production() = prod;
  *s.add_recent() = prod;
  pb::Preview preview;
  preview.set_branch("feature");
  preview.set_url("http://127.0.0.1:20100/");
  preview.set_deployment_id("web-89abcde-bbbbbb");
  (*s.mutable_previews())["feature"] = preview;
  pb::PushRequest* push = s.add_queue();
  push->set_deployment_id("web-head-cccccc");
  push->set_branch("main");
  push->set_trigger("webhook");
  *push->mutable_received_time() = Ts(kT0 + absl::Seconds(30));

  REQUIRE(FormatProject(s, kT0 + absl::Minutes(1)) ==
          "ID:                web\n"
          "Repository:        file:///srv/git/web.git\n"
          "Production branch: main\n"
          "Branches:          all\n"
          "Context:           .\n"
          "Containerfile:     Containerfile\n"
          "Build args:        A=1 B=\"two words\"\n"
          "Build network:     none\n"
          "Image repository:  kiln/web\n"
          "Git token secret:  -\n"
          "Machine:           process (small)\n"
          "Deploy target:     podman\n"
          "Port:              8080\n"
          "Health path:       /health\n"
          "\n"
          "Production:        http://127.0.0.1:8080/  web-0123456-aaaaaa SUCCEEDED main@0123456\n"
          "Active:            none\n"
          "\n"
          "Previews (1):\n"
          "  BRANCH   URL                      DEPLOYMENT\n"
          "  feature  http://127.0.0.1:20100/  web-89abcde-bbbbbb\n"
          "\n"
          "Queue (1):\n"
          "  DEPLOYMENT       BRANCH  COMMIT  KIND     RECEIVED\n"
          "  web-head-cccccc  main    -       webhook  30s ago\n"
          "\n"
          "Recent deployments (1):\n"
          "  ID                  BRANCH  COMMIT   STATE      IMAGE  STARTED  TOOK\n"
          "  web-0123456-aaaaaa  main    0123456  SUCCEEDED  -      1m ago   2s\n");

  pb::CreateProjectResponse created;
  *created.mutable_config() = *c;
  created.set_webhook_url("http://127.0.0.1:7380/webhooks/github");
  created.set_webhook_secret("s3cret");
  const std::string text = FormatCreatedProject(created);
  REQUIRE(text.find("Webhook URL:       http://127.0.0.1:7380/webhooks/github\n"
                    "Webhook secret:    s3cret\n"
                    "The webhook secret is shown only this once") != std::string::npos);

  REQUIRE(FormatProjectList({*c}) ==
          "ID   REPOSITORY\n"
          "web  file:///srv/git/web.git\n");
}

TEST_CASE("Project flags change only what was given") {
  pb::ProjectConfig config;
  config.set_id("web");
  config.set_repository_url("file:///a");
  config.set_port(8080);
  config.add_branches("main");
  (*config.mutable_build_args())["OLD"] = "1";

  ProjectFlags flags;
  flags.port = 9090;
  flags.build_args = std::vector<std::string>{"A=1", "B=x=y", "EMPTY="};
  REQUIRE(ApplyProjectFlags(flags, &config).ok());
  REQUIRE(config.repository_url() == "file:///a");
  REQUIRE(config.port() == 9090);
  REQUIRE(config.branches_size() == 1);
  REQUIRE(config.build_args().size() == 3);
  REQUIRE(config.build_args().at("B") == "x=y");
  REQUIRE(config.build_args().at("EMPTY").empty());

  flags = ProjectFlags();
  flags.branches = std::vector<std::string>{"main", "release"};
  flags.deploy_target = "none";
  REQUIRE(ApplyProjectFlags(flags, &config).ok());
  REQUIRE(config.branches_size() == 2);
  REQUIRE(config.deploy_target() == "none");
  REQUIRE(config.build_args().size() == 3);

  flags = ProjectFlags();
  flags.build_args = std::vector<std::string>{"=v"};
  REQUIRE(ApplyProjectFlags(flags, &config).message() == "--build-arg: '=v' is not NAME=VALUE");
}

}  // namespace
}  // namespace kiln::cli
