// The build platform's control plane in the test process, with its outside world faked: a
// builder agent for project "web" (a commit table and builds that can be held), a machine
// provider that "wakes" it (its first N wakes start nothing), and a deploy target that records
// what it runs. The workflows, activities, PlatformApi and (on request) BuildService are the
// real ones, against a real kiln-orchestrator. What this tests is scheduling and the API, not
// podman (tests/e2e does it all for real). Test-only: uses Catch2's REQUIRE.
#pragma once

#include <catch2/catch.hpp>

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/activity_worker.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "worker/activities/platform_activities.h"
#include "worker/api/build_service.h"
#include "worker/api/platform_api.h"
#include "worker/workflows/deployment_workflow.h"
#include "worker/workflows/platform.h"
#include "worker/workflows/project_workflow.h"

namespace kiln::worker::fakes {

using sdk::FromPayloadAt;
using sdk::ToPayloads;

// How long InProcessPlatform::WaitEnded waits for a deployment to end.
inline constexpr absl::Duration kPlatformWait = absl::Seconds(30);

// A commit-like 40 hex digits derived from `seed`.
inline std::string Hex40(const std::string& seed) {
  std::string out;
  uint64_t h = 1469598103934665603ull;
  for (char c : seed) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  while (out.size() < 40) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    out += absl::StrCat(absl::Hex(h >> 60));
  }
  return out;
}

// The builder agent of project "web": a commit table, and a build that can be held.
class FakeAgent {
 public:
  struct Commit {
    std::string sha;
    std::string tree;
  };

  explicit FakeAgent(sdk::Connection& connection) : connection_(connection) {}

  void SetRevision(const std::string& revision, Commit commit) {
    absl::MutexLock lock(&mu_);
    revisions_[revision] = commit;
    revisions_[commit.sha] = commit;
  }
  void HoldBuilds(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_ = hold;
  }
  int builds() {
    absl::MutexLock lock(&mu_);
    return builds_;
  }
  int fetches() {
    absl::MutexLock lock(&mu_);
    return fetches_;
  }
  int cancelled_builds() {
    absl::MutexLock lock(&mu_);
    return cancelled_builds_;
  }
  bool building() {
    absl::MutexLock lock(&mu_);
    return building_;
  }

  // Starts serving project/web (what a wake does).
  void Start() {
    absl::MutexLock lock(&mu_);
    if (worker_) return;
    worker_ = std::make_unique<sdk::ActivityWorker>(
        connection_, "project/web",
        sdk::ActivityWorkerOptions{.identity = "fake-agent",
                                   .max_concurrent = 1,
                                   .max_heartbeat_interval = absl::Milliseconds(50)});
    auto fetch = [this](sdk::ActivityContext&,
                        const api::Payloads& input) -> absl::StatusOr<api::Payloads> {
      auto in = FromPayloadAt<pb::FetchSourceInput>(input, 0);
      if (!in.ok()) return in.status();
      absl::MutexLock lock(&mu_);
      ++fetches_;
      auto it = revisions_.find(in->revision());
      if (it == revisions_.end()) {
        return sdk::ApplicationError("SourceNotFound", "no revision " + in->revision(), true);
      }
      pb::FetchSourceResult result;
      result.set_commit_sha(it->second.sha);
      result.set_tree_id(it->second.tree);
      result.set_containerfile_id(Hex40("containerfile"));
      result.set_worktree_dir("/volume/git/tree");
      return ToPayloads(result);
    };
    auto build = [this](sdk::ActivityContext& ctx,
                        const api::Payloads& input) -> absl::StatusOr<api::Payloads> {
      auto in = FromPayloadAt<pb::BuildImageInput>(input, 0);
      if (!in.ok()) return in.status();
      {
        absl::MutexLock lock(&mu_);
        ++builds_;
        building_ = true;
      }
      for (;;) {
        ctx.Heartbeat(ToPayloads(std::string("building")));
        {
          absl::MutexLock lock(&mu_);
          if (ctx.cancelled()) {
            ++cancelled_builds_;
            building_ = false;
            return sdk::CanceledError();
          }
          if (!hold_) break;
        }
        ctx.WaitForCancellation(absl::Milliseconds(10));
      }
      absl::MutexLock lock(&mu_);
      building_ = false;
      pb::BuildImageResult result;
      result.set_image_ref("kiln/web:" + in->commit_sha());
      result.set_steps(3);
      return ToPayloads(result);
    };
    auto push = [](sdk::ActivityContext&,
                   const api::Payloads& input) -> absl::StatusOr<api::Payloads> {
      auto in = FromPayloadAt<pb::PushImageInput>(input, 0);
      if (!in.ok()) return in.status();
      pb::PushImageResult result;
      result.set_digest("sha256:" + Hex40(in->image_ref()) + Hex40(in->image_ref()).substr(0, 24));
      result.set_reference("127.0.0.1:5000/kiln/web@" + result.digest());
      return ToPayloads(result);
    };
    auto housekeeping = [](sdk::ActivityContext&,
                           const api::Payloads&) -> absl::StatusOr<api::Payloads> {
      return ToPayloads(pb::HousekeepingResult());
    };
    REQUIRE(worker_->Register("kiln.builder.FetchSource", fetch).ok());
    REQUIRE(worker_->Register("kiln.builder.BuildImage", build).ok());
    REQUIRE(worker_->Register("kiln.builder.PushImage", push).ok());
    REQUIRE(worker_->Register("kiln.builder.Housekeeping", housekeeping).ok());
    REQUIRE(worker_->Start().ok());
  }

 private:
  sdk::Connection& connection_;
  absl::Mutex mu_;
  std::unique_ptr<sdk::ActivityWorker> worker_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Commit> revisions_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool building_ ABSL_GUARDED_BY(mu_) = false;
  int builds_ ABSL_GUARDED_BY(mu_) = 0;
  int fetches_ ABSL_GUARDED_BY(mu_) = 0;
  int cancelled_builds_ ABSL_GUARDED_BY(mu_) = 0;
};

// A machine provider whose first `dead_wakes` wakes start nothing (an agent that never came up).
class FakeMachines : public MachineProvider {
 public:
  FakeMachines(FakeAgent& agent, int dead_wakes) : agent_(agent), dead_wakes_(dead_wakes) {}
  absl::StatusOr<WakeResult> Wake(const WakeRequest& request) override {
    int n = ++wakes_;
    tokens_.store(!request.token.empty());
    if (n > dead_wakes_) agent_.Start();
    return WakeResult{.already_awake = false, .pid = 4242, .took = absl::Milliseconds(1)};
  }
  absl::StatusOr<MachineStatus> Status(const std::string& project) override {
    MachineStatus status;
    status.project = project;
    return status;
  }
  absl::StatusOr<std::vector<MachineStatus>> List() override {
    return std::vector<MachineStatus>{};
  }
  absl::Status Stop(const std::string&, absl::Duration) override { return absl::OkStatus(); }
  absl::Status Destroy(const std::string&) override { return absl::OkStatus(); }
  int wakes() const { return wakes_.load(); }

 private:
  FakeAgent& agent_;
  const int dead_wakes_;
  std::atomic<int> wakes_{0};
  std::atomic<bool> tokens_{false};
};

class FakeTarget : public DeployTarget {
 public:
  absl::StatusOr<DeployResult> Deploy(const DeployRequest& request, const DeployLogSink& log,
                                      const std::function<bool()>&) override {
    absl::MutexLock lock(&mu_);
    int port = request.public_port != 0 ? request.public_port : next_port_++;
    log(absl::StrCat("[deploy] ", request.image, " into ", request.slot));
    DeployResult result;
    result.public_port = port;
    result.url = absl::StrCat("http://127.0.0.1:", port, "/");
    result.container = absl::StrCat("kiln-web-", request.slot);
    slots_[request.slot] = request.image;
    deploys_.push_back(request);
    return result;
  }
  absl::Status StopSlot(const std::string&, const std::string& slot) override {
    absl::MutexLock lock(&mu_);
    slots_.erase(slot);
    stopped_.insert(slot);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<SlotInfo>> List(const std::string&) override {
    return std::vector<SlotInfo>{};
  }
  std::string ImageIn(const std::string& slot) {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(slot);
    return it == slots_.end() ? "" : it->second;
  }
  bool Stopped(const std::string& slot) {
    absl::MutexLock lock(&mu_);
    return stopped_.contains(slot);
  }
  size_t deploys() {
    absl::MutexLock lock(&mu_);
    return deploys_.size();
  }

 private:
  absl::Mutex mu_;
  int next_port_ = 20100;
  std::map<std::string, std::string> slots_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> stopped_ ABSL_GUARDED_BY(mu_);
  std::vector<DeployRequest> deploys_ ABSL_GUARDED_BY(mu_);
};

// The control plane of kiln-worker, in this process.
struct InProcessPlatform {
  explicit InProcessPlatform(int dead_wakes = 0)
      : orchestrator(dir.path() + "/data"),
        started(orchestrator.Start()),
        agent(orchestrator.connection()),
        machines(agent, dead_wakes) {
    REQUIRE(started.ok());
    PlatformActivitiesOptions options;
    options.machines["process"] = &machines;
    options.targets["podman"] = &target;
    options.connection = &orchestrator.connection();
    options.mint_agent_token = [](const std::string& project) -> absl::StatusOr<std::string> {
      return "token-for-" + project;
    };
    activities_impl = std::make_unique<PlatformActivities>(options);
    activities = std::make_unique<sdk::ActivityWorker>(
        orchestrator.connection(), kPlatformTaskQueue, sdk::ActivityWorkerOptions{});
    REQUIRE(activities_impl->Register(*activities).ok());
    REQUIRE(activities->Start().ok());
    workflows = std::make_unique<sdk::WorkflowWorker>(orchestrator.connection(), kPlatformTaskQueue,
                                                      sdk::WorkflowWorkerOptions{});
    workflows->Register(kProjectWorkflowType, ProjectWorkflow);
    workflows->Register(kDeploymentWorkflowType, DeploymentWorkflow);
    workflows->Start();
    auto created = PlatformApi::Create({.connection = &orchestrator.connection(),
                                        .ns = "",
                                        .secrets_dir = dir.path() + "/secrets",
                                        .webhook_url = "http://127.0.0.1:1/webhooks/github"});
    REQUIRE(created.ok());
    api = *std::move(created);
  }
  ~InProcessPlatform() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    workflows->Stop();
    activities->Stop();
  }

  // Serves kiln.platform.v1.BuildService on a free port of 127.0.0.1 (what kiln-worker's
  // --listen does); returns its address.
  std::string ServeBuildService() {
    build_service = std::make_unique<BuildServiceImpl>(api.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(build_service.get());
    server = builder.BuildAndStart();
    REQUIRE(server != nullptr);
    REQUIRE(port != 0);
    return absl::StrCat("127.0.0.1:", port);
  }

  pb::ProjectConfig Config() {
    pb::ProjectConfig config;
    config.set_id("web");
    config.set_repository_url("file:///srv/git/web.git");
    config.set_production_branch("main");
    config.set_port(18080);
    config.set_health_path("/health");
    config.set_machine_wake_timeout_ms(1500);
    return config;
  }

  std::string Push(const std::string& branch, const std::string& sha) {
    pb::TriggerBuildRequest request;
    request.set_project_id("web");
    request.set_branch(branch);
    request.set_commit_sha(sha);
    auto id = api->TriggerBuild(request, "api");
    INFO(id.status());
    REQUIRE(id.ok());
    return *id;
  }

  // Until the deployment has ended and none of its steps runs (a deployment is SUCCEEDED
  // once it serves; housekeeping on its machine may still be running then).
  pb::Deployment WaitEnded(const std::string& id) {
    pb::Deployment last;
    absl::Status last_error;
    bool ended = testutil::WaitFor(
        [&] {
          auto d = api->GetDeployment(id);
          if (!d.ok()) {
            last_error = d.status();
            return false;
          }
          last = *d;
          for (const auto& step : d->steps()) {
            if (step.status() == "running") return false;
          }
          return d->state() == pb::DEPLOYMENT_STATE_SUCCEEDED ||
                 d->state() == pb::DEPLOYMENT_STATE_FAILED ||
                 d->state() == pb::DEPLOYMENT_STATE_CANCELED;
        },
        kPlatformWait);
    INFO(last.DebugString());
    INFO("the last GetDeployment error: " << last_error);
    REQUIRE(ended);
    return last;
  }

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator;
  absl::Status started;
  FakeAgent agent;
  FakeMachines machines;
  FakeTarget target;
  std::unique_ptr<PlatformActivities> activities_impl;
  std::unique_ptr<sdk::ActivityWorker> activities;
  std::unique_ptr<sdk::WorkflowWorker> workflows;
  std::unique_ptr<PlatformApi> api;
  std::unique_ptr<BuildServiceImpl> build_service;
  std::unique_ptr<grpc::Server> server;
};

}  // namespace kiln::worker::fakes
