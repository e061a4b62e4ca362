// The build platform end to end, every part real: kiln-orchestrator, kiln-worker (the control
// plane: workflows, BuildService, webhooks, the process machine provider, the podman deploy
// target), kiln-builder-agent woken by the worker, podman, Debian's docker-registry on
// 127.0.0.1, and a git repository made here holding a small HTTP app on a busybox base image
// (pushed to the registry first: no image can be pulled from outside).
//
// One story, in order, because each step builds on the machine and images of the one before:
//   a signed GitHub push -> the deployment healthy on the project's port; bad deliveries
//   (signature, repository, JSON) start nothing; the machine sleeps after the build; a one-line
//   change redeploys warm; the same tree on another branch skips the build and gets a preview;
//   the branch's delete event stops the preview; a rollback redeploys the first image; a newer
//   push supersedes a build in progress; the worker killed (SIGKILL) mid-build and restarted
//   finishes the deployment exactly once; and no secret (webhook secret, admin token, signing
//   key) appears in any history, build log, process log, error or metric.
// Skipped, with a message saying why, only where podman cannot run containers at all (a
// failure instead with KILN_REQUIRE_PODMAN=1).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>

#include <filesystem>

#include <grpcpp/create_channel.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "builder-agent/podman/podman.h"
#include "kiln/platform/v1/build_service.grpc.pb.h"
#include "sdk/client.h"
#include "tests/testutil/git_require.h"
#include "tests/testutil/github_push.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
namespace pb = ::kiln::platform::v1;
namespace fs = std::filesystem;

constexpr absl::Duration kDeployTimeout = absl::Seconds(180);
constexpr char kSecret[] = "e2e-webhook-secret-7Qx";

// Whether podman can run a container here (the e2e needs it); the reason when not.
std::string PodmanUnavailable(const std::string& dir) {
  builder::PodmanOptions options;
  options.volume = dir + "/probe";
  auto podman = builder::Podman::Create(options);
  return podman.ok() ? "" : std::string(podman.status().message());
}

class Worker {
 public:
  Worker(std::string dir, std::vector<std::string> args)
      : dir_(std::move(dir)), args_(std::move(args)) {}
  ~Worker() { Stop(); }
  void Start() {
    ++starts_;
    auto process = testutil::Process::Start(testutil::BinaryPath("kiln-worker"), args_,
                                            absl::StrCat(dir_, "/worker-", starts_, ".log"));
    REQUIRE(process.ok());
    process_ = *std::move(process);
  }
  void Kill() {
    if (process_) process_->Signal(SIGKILL);
    if (process_) (void)process_->Wait(absl::Seconds(10));
    process_.reset();
  }
  void Stop() {
    if (!process_) return;
    process_->Signal(SIGTERM);
    if (!process_->Wait(absl::Seconds(15)).ok()) process_->Signal(SIGKILL);
    process_.reset();
  }
  std::string Log() const {
    return testutil::ReadFile(absl::StrCat(dir_, "/worker-", starts_, ".log"));
  }

 private:
  std::string dir_;
  std::vector<std::string> args_;
  int starts_ = 0;
  std::unique_ptr<testutil::Process> process_;
};

using testutil::DeploymentIdIn;

std::string PushPayload(const std::string& url, const std::string& branch,
                        const std::string& before, const std::string& after,
                        const std::string& tree, const std::string& message) {
  return testutil::GithubPushPayload(url, branch, before, after, tree, message);
}

std::string DeletePayload(const std::string& url, const std::string& branch) {
  return testutil::GithubDeletePayload(url, branch);
}

struct Delivery {
  int status = 0;
  std::string body;
};

Delivery Deliver(int port, const std::string& event, const std::string& delivery,
                 const std::string& payload, const std::string& secret = kSecret) {
  auto reply = testutil::DeliverGithubEvent(port, event, delivery, payload, secret);
  INFO(reply.status());
  REQUIRE(reply.ok());
  return {reply->status, reply->body};
}

class Platform {
 public:
  explicit Platform(pb::BuildService::Stub& stub) : stub_(stub) {}

  absl::StatusOr<pb::Deployment> Get(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    pb::GetDeploymentRequest request;
    request.set_deployment_id(id);
    pb::Deployment d;
    grpc::Status status = stub_.GetDeployment(&context, request, &d);
    if (!status.ok()) return absl::UnknownError(status.error_message());
    return d;
  }

  pb::Deployment WaitFor(const std::string& id, std::function<bool(const pb::Deployment&)> done) {
    pb::Deployment last;
    bool ok = testutil::WaitFor(
        [&] {
          auto d = Get(id);
          if (!d.ok()) return false;
          last = *d;
          return done(last);
        },
        kDeployTimeout);
    INFO(last.DebugString());
    REQUIRE(ok);
    return last;
  }

  pb::Deployment WaitEnded(const std::string& id) {
    return WaitFor(id, [](const pb::Deployment& d) {
      return d.state() == pb::DEPLOYMENT_STATE_SUCCEEDED ||
             d.state() == pb::DEPLOYMENT_STATE_FAILED || d.state() == pb::DEPLOYMENT_STATE_CANCELED;
    });
  }

  int Count(const std::string& branch) {
    grpc::ClientContext context;
    pb::ListDeploymentsRequest request;
    request.set_project_id("web");
    request.set_branch(branch);
    request.set_page_size(1000);
    pb::ListDeploymentsResponse response;
    REQUIRE(stub_.ListDeployments(&context, request, &response).ok());
    return response.deployments_size();
  }

 private:
  pb::BuildService::Stub& stub_;
};

// Processes whose command line names `dir` (the agents, conmon and its containers' storage).
std::vector<std::string> ProcessesUnder(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& [pid, cmdline] : testutil::ProcessesNaming(dir)) {
    found.push_back(absl::StrCat(pid, ": ", cmdline.substr(0, 200)));
  }
  return found;
}

std::string Serve(int port) {
  auto body = testutil::HttpGet("127.0.0.1", port, "/");
  return body.ok() ? *body : absl::StrCat("<", body.status().message(), ">");
}

TEST_CASE("A commit becomes a running container, end to end", "[e2e]") {
  testutil::TempDir dir;
  if (std::string why = PodmanUnavailable(dir.path()); !why.empty()) {
    if (std::getenv("KILN_REQUIRE_PODMAN") != nullptr) FAIL("podman cannot run here: " << why);
    WARN("skipped: podman cannot run containers here: " << why);
    return;
  }
  fs::create_directories(dir.path() + "/registry");
  auto registry = testutil::RegistryProcess::Start(dir.path() + "/registry");
  INFO(registry.status());
  REQUIRE(registry.ok());
  const std::string base = (*registry)->address() + "/kiln/busybox:latest";
  {
    auto podman = testutil::PlainPodman({"--root", dir.path() + "/base/root", "--runroot",
                                         dir.path() + "/base/run", "--storage-driver", "vfs"});
    REQUIRE(testutil::ImportBusyboxImage(podman, base, dir.path() + "/base").ok());
    REQUIRE(podman({"push", "--quiet", "--tls-verify=false", base}).ok());
  }

  testutil::OrchestratorProcess orchestrator(dir.path() + "/orchestrator");
  REQUIRE(orchestrator.Start().ok());
  const int grpc_port = testutil::FreePort();
  const int http_port = testutil::FreePort();
  const int app_port = testutil::FreePort();
  const int worker_metrics_port = testutil::FreePort();
  Worker worker(
      dir.path(),
      {"--orchestrator", orchestrator.address(), "--data-dir", dir.path() + "/worker", "--listen",
       absl::StrCat("127.0.0.1:", grpc_port), "--http", absl::StrCat("127.0.0.1:", http_port),
       "--registry", (*registry)->address(), "--auth-key-file",
       dir.path() + "/orchestrator/auth.key", "--agent-idle-grace", "1", "--deploy-stop-timeout",
       "1", "--metrics", absl::StrCat("127.0.0.1:", worker_metrics_port)});
  worker.Start();
  // BuildService takes the same admin token as the orchestrator.
  auto channel =
      sdk::Connection(absl::StrCat("127.0.0.1:", grpc_port), {.token = orchestrator.admin_token()})
          .channel();
  REQUIRE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)));
  auto stub = pb::BuildService::NewStub(channel);
  Platform platform(*stub);

  // The app: busybox httpd serving www/, on the port the platform gives it.
  const std::string repo = dir.path() + "/repo";
  testutil::WriteFile(repo + "/Containerfile",
                      absl::StrCat("FROM ", base,
                                   "\nCOPY www /www\n"
                                   "CMD [\"sh\", \"-c\", \"exec httpd -f -p ${PORT} -h /www\"]\n"));
  testutil::WriteFile(repo + "/www/index.html", "v1\n");
  testutil::WriteFile(repo + "/www/health", "ok\n");
  testutil::RequireGit(repo, {"init", "-q", "-b", "main"});
  testutil::RequireGit(repo, {"add", "-A"});
  testutil::RequireGit(repo, {"commit", "-q", "-m", "v1"});
  auto head = [&] { return testutil::RequireGit(repo, {"rev-parse", "HEAD"}); };
  auto tree = [&] { return testutil::RequireGit(repo, {"rev-parse", "HEAD^{tree}"}); };
  const std::string zero(40, '0');

  {
    grpc::ClientContext context;
    pb::CreateProjectRequest request;
    pb::ProjectConfig* config = request.mutable_config();
    config->set_id("web");
    config->set_repository_url(repo);
    config->set_production_branch("main");
    config->set_port(app_port);
    config->set_health_path("/health");
    request.set_webhook_secret(kSecret);
    pb::CreateProjectResponse response;
    grpc::Status status = stub->CreateProject(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    CHECK(response.webhook_url() ==
          absl::StrCat("http://127.0.0.1:", http_port, "/webhooks/github"));
  }

  // 1. A signed push deploys to production.
  std::string v1 = head();
  Delivery first =
      Deliver(http_port, "push", "d-1", PushPayload(repo, "main", zero, v1, tree(), "v1"));
  INFO(first.body);
  REQUIRE(first.status == 202);
  const std::string first_id = DeploymentIdIn(first.body);
  REQUIRE_FALSE(first_id.empty());
  pb::Deployment d1 = platform.WaitEnded(first_id);
  INFO(d1.DebugString() << worker.Log());
  REQUIRE(d1.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(d1.commit_sha() == v1);
  CHECK(Serve(app_port) == "v1\n");
  CHECK(d1.url() == absl::StrCat("http://127.0.0.1:", app_port, "/"));

  // The same delivery again: the same answer, nothing new.
  Delivery again =
      Deliver(http_port, "push", "d-1", PushPayload(repo, "main", zero, v1, tree(), "v1"));
  CHECK(DeploymentIdIn(again.body) == first_id);

  // 2. Bad deliveries start nothing.
  int before = platform.Count("main");
  std::string payload = PushPayload(repo, "main", v1, v1, tree(), "x");
  CHECK(Deliver(http_port, "push", "bad-1", payload, "wrong-secret").status == 401);
  CHECK(Deliver(http_port, "push", "bad-2",
                PushPayload("/elsewhere/repo", "main", v1, v1, tree(), "x"))
            .status == 404);
  CHECK(Deliver(http_port, "push", "bad-3", "{\"ref\": \"refs/heads/main\", ").status == 400);
  CHECK(platform.Count("main") == before);

  // 3. The machine sleeps once the build is done (its agent exits, the worker notes it).
  const std::string agent_log = dir.path() + "/worker/machines/web/agent.log";
  CHECK(testutil::WaitFor(
      [&] { return absl::StrContains(testutil::ReadFile(agent_log), "exited with code 0"); },
      absl::Seconds(30)));

  // 4. A one-line change redeploys (the machine wakes again, the layer cache is warm).
  testutil::WriteFile(repo + "/www/index.html", "v2\n");
  testutil::RequireGit(repo, {"commit", "-q", "-am", "v2"});
  std::string v2 = head();
  Delivery second =
      Deliver(http_port, "push", "d-2", PushPayload(repo, "main", v1, v2, tree(), "v2"));
  REQUIRE(second.status == 202);
  pb::Deployment d2 = platform.WaitEnded(DeploymentIdIn(second.body));
  REQUIRE(d2.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(Serve(app_port) == "v2\n");
  CHECK_FALSE(d2.build_skipped());

  // 5. The same tree on another branch (a new commit): no build, a preview of its own.
  testutil::RequireGit(repo, {"checkout", "-q", "-b", "feature"});
  testutil::RequireGit(repo, {"commit", "-q", "--allow-empty", "-m", "same tree"});
  std::string v2b = head();
  Delivery preview =
      Deliver(http_port, "push", "d-3", PushPayload(repo, "feature", v2, v2b, tree(), "same"));
  REQUIRE(preview.status == 202);
  pb::Deployment d3 = platform.WaitEnded(DeploymentIdIn(preview.body));
  REQUIRE(d3.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(d3.build_skipped());
  CHECK(d3.image_digest() == d2.image_digest());
  CHECK(d3.slot() != "production");
  int preview_port = 0;
  {
    std::string port(absl::StripSuffix(d3.url().substr(d3.url().rfind(':') + 1), "/"));
    REQUIRE(absl::SimpleAtoi(port, &preview_port));
  }
  CHECK(preview_port != app_port);
  CHECK(Serve(preview_port) == "v2\n");

  // 6. Deleting the branch stops its preview.
  CHECK(Deliver(http_port, "delete", "d-4", DeletePayload(repo, "feature")).status == 202);
  CHECK(testutil::WaitFor([&] { return !testutil::HttpGet("127.0.0.1", preview_port, "/").ok(); },
                          absl::Seconds(60)));
  CHECK(Serve(app_port) == "v2\n");

  // 7. Rollback to the first deployment: its image again, no build.
  {
    grpc::ClientContext context;
    pb::RollbackRpcRequest request;
    request.set_project_id("web");
    request.set_target_deployment_id(first_id);
    pb::RollbackResponse response;
    REQUIRE(stub->Rollback(&context, request, &response).ok());
    pb::Deployment rolled = platform.WaitEnded(response.deployment_id());
    REQUIRE(rolled.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
    CHECK(rolled.image_digest() == d1.image_digest());
    CHECK(Serve(app_port) == "v1\n");
  }

  // 8. A newer push supersedes a build in progress.
  testutil::RequireGit(repo, {"checkout", "-q", "main"});
  testutil::WriteFile(repo + "/Containerfile",
                      absl::StrCat("FROM ", base,
                                   "\nRUN sleep 60\nCOPY www /www\n"
                                   "CMD [\"sh\", \"-c\", \"exec httpd -f -p ${PORT} -h /www\"]\n"));
  testutil::RequireGit(repo, {"commit", "-q", "-am", "slow"});
  std::string slow = head();
  Delivery slow_push =
      Deliver(http_port, "push", "d-5", PushPayload(repo, "main", v2, slow, tree(), "slow"));
  const std::string slow_id = DeploymentIdIn(slow_push.body);
  platform.WaitFor(
      slow_id, [](const pb::Deployment& d) { return d.state() == pb::DEPLOYMENT_STATE_BUILDING; });
  testutil::WriteFile(repo + "/Containerfile",
                      absl::StrCat("FROM ", base,
                                   "\nCOPY www /www\n"
                                   "CMD [\"sh\", \"-c\", \"exec httpd -f -p ${PORT} -h /www\"]\n"));
  testutil::WriteFile(repo + "/www/index.html", "v3\n");
  testutil::RequireGit(repo, {"commit", "-q", "-am", "v3"});
  std::string v3 = head();
  absl::Time superseding = absl::Now();
  Delivery newer =
      Deliver(http_port, "push", "d-6", PushPayload(repo, "main", slow, v3, tree(), "v3"));
  const std::string v3_id = DeploymentIdIn(newer.body);
  pb::Deployment old = platform.WaitEnded(slow_id);
  CHECK(old.state() == pb::DEPLOYMENT_STATE_CANCELED);
  CHECK(old.superseded_by() == v3_id);
  pb::Deployment d4 = platform.WaitEnded(v3_id);
  REQUIRE(d4.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  // The 60 s RUN was stopped: the newer deployment did not wait for it.
  CHECK(absl::Now() - superseding < absl::Seconds(50));
  CHECK(Serve(app_port) == "v3\n");

  // 9. The worker killed mid-build and restarted: the deployment finishes, once.
  testutil::WriteFile(repo + "/Containerfile",
                      absl::StrCat("FROM ", base,
                                   "\nRUN sleep 3\nCOPY www /www\n"
                                   "CMD [\"sh\", \"-c\", \"exec httpd -f -p ${PORT} -h /www\"]\n"));
  testutil::WriteFile(repo + "/www/index.html", "v4\n");
  testutil::RequireGit(repo, {"commit", "-q", "-am", "v4"});
  std::string v4 = head();
  Delivery crash =
      Deliver(http_port, "push", "d-7", PushPayload(repo, "main", v3, v4, tree(), "v4"));
  const std::string v4_id = DeploymentIdIn(crash.body);
  platform.WaitFor(
      v4_id, [](const pb::Deployment& d) { return d.state() == pb::DEPLOYMENT_STATE_BUILDING; });
  worker.Kill();
  worker.Start();
  REQUIRE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)));
  pb::Deployment d5 = platform.WaitEnded(v4_id);
  INFO(worker.Log());
  REQUIRE(d5.state() == pb::DEPLOYMENT_STATE_SUCCEEDED);
  CHECK(Serve(app_port) == "v4\n");
  sdk::Client client(orchestrator.connection());
  auto history = client.GetHistory({.workflow_id = "deployment/" + v4_id});
  REQUIRE(history.ok());
  int deploys = 0;
  for (const auto& event : history->events()) {
    if (event.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED &&
        event.activity_task_scheduled_event_attributes().activity_type().name() ==
            "kiln.platform.Deploy") {
      ++deploys;
    }
  }
  CHECK(deploys == 1);

  // 10. No secret anywhere: the webhook secret, the admin token and the signing key appear in no
  // history, no log (build logs and the processes' own), no error and no metric.
  {
    std::vector<std::pair<std::string, std::string>> outputs;  // what, its text
    std::vector<api::WorkflowExecutionInfo> runs;
    api::ListWorkflowExecutionsRequest list;
    list.set_page_size(1000);
    for (;;) {
      grpc::ClientContext context;
      api::ListWorkflowExecutionsResponse page;
      grpc::Status status = orchestrator.connection().workflow_service().ListWorkflowExecutions(
          &context, list, &page);
      REQUIRE(status.ok());
      runs.insert(runs.end(), page.executions().begin(), page.executions().end());
      if (page.next_page_token().empty()) break;
      list.set_next_page_token(page.next_page_token());
    }
    CHECK(runs.size() >= 8);  // the project's workflow and each of the 7 deployments
    for (const api::WorkflowExecutionInfo& run : runs) {
      auto events = client.GetHistory(
          {.workflow_id = run.execution().workflow_id(), .run_id = run.execution().run_id()});
      REQUIRE(events.ok());
      outputs.emplace_back("history of " + run.execution().workflow_id(),
                           events->SerializeAsString() + events->DebugString());
      outputs.emplace_back("visibility of " + run.execution().workflow_id(), run.DebugString());
    }
    grpc::ClientContext list_context;
    pb::ListDeploymentsRequest deployments_request;
    deployments_request.set_project_id("web");
    deployments_request.set_page_size(1000);
    pb::ListDeploymentsResponse deployments;
    REQUIRE(stub->ListDeployments(&list_context, deployments_request, &deployments).ok());
    for (const pb::Deployment& d : deployments.deployments()) {
      grpc::ClientContext context;
      pb::FollowLogRequest request;
      request.set_deployment_id(d.id());
      auto reader = stub->FollowLog(&context, request);
      std::string log;
      for (pb::LogChunk chunk; reader->Read(&chunk);) log += chunk.data();
      REQUIRE(reader->Finish().ok());
      CHECK(!log.empty());
      outputs.emplace_back("build log of " + d.id(), log + d.DebugString());
    }
    {
      grpc::ClientContext context;
      pb::GetProjectRequest request;
      request.set_id("web");
      pb::GetProjectResponse project;
      REQUIRE(stub->GetProject(&context, request, &project).ok());
      outputs.emplace_back("GetProject", project.DebugString());
    }
    // Errors: a wrong secret's delivery, a wrong token, a refused value.
    Delivery refused =
        Deliver(http_port, "push", "bad-4", PushPayload(repo, "main", v4, v4, tree(), "x"), "nope");
    outputs.emplace_back("refused delivery", refused.body);
    {
      auto wrong = sdk::Connection(absl::StrCat("127.0.0.1:", grpc_port),
                                   {.token = orchestrator.admin_token() + "x"})
                       .channel();
      grpc::ClientContext context;
      pb::GetProjectRequest request;
      request.set_id("web");
      pb::GetProjectResponse response;
      grpc::Status status =
          pb::BuildService::NewStub(wrong)->GetProject(&context, request, &response);
      CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
      outputs.emplace_back("wrong token error", status.error_message());
    }
    outputs.emplace_back("orchestrator metrics",
                         testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics")
                             .value_or("<no metrics>"));
    outputs.emplace_back(
        "worker metrics",
        testutil::HttpGet("127.0.0.1", worker_metrics_port, "/metrics").value_or("<no metrics>"));
    outputs.emplace_back("orchestrator log", orchestrator.Log());
    for (const char* log : {"/worker-1.log", "/worker-2.log", "/worker/machines/web/agent.log",
                            "/worker/machines/web/agent.log.1"}) {
      outputs.emplace_back(log, testutil::ReadFile(dir.path() + log));
    }
    const std::string key = testutil::ReadFile(orchestrator.key_file());
    REQUIRE(key.size() == 32);
    const std::vector<std::pair<std::string, std::string>> secrets = {
        {"the webhook secret", kSecret},
        {"the admin token", orchestrator.admin_token()},
        {"the signing key", key},
        {"the signing key in hex", absl::BytesToHexString(key)},
        {"the signing key in base64", absl::Base64Escape(key)},
        {"the signing key in url-safe base64", absl::WebSafeBase64Escape(key)},
    };
    for (const auto& [what, text] : outputs) {
      for (const auto& [name, secret] : secrets) {
        INFO(name << " in " << what);
        CHECK_FALSE(absl::StrContains(text, secret));
      }
    }
  }

  // Stop the project: its containers go.
  {
    grpc::ClientContext context;
    pb::DeleteProjectRequest request;
    request.set_id("web");
    pb::DeleteProjectResponse response;
    REQUIRE(stub->DeleteProject(&context, request, &response).ok());
    CHECK(testutil::WaitFor([&] { return !testutil::HttpGet("127.0.0.1", app_port, "/").ok(); },
                            absl::Seconds(60)));
  }
  worker.Stop();
  // Nothing the worker started is left: no agent, no container (conmon names its storage).
  CHECK(testutil::WaitFor([&] { return ProcessesUnder(dir.path() + "/worker").empty(); },
                          absl::Seconds(30)));
  INFO(absl::StrJoin(ProcessesUnder(dir.path() + "/worker"), "\n"));
  INFO(testutil::ReadFile(dir.path() + "/worker-1.log") +
       testutil::ReadFile(dir.path() + "/worker-2.log"));
  CHECK(ProcessesUnder(dir.path() + "/worker").empty());
}

}  // namespace
}  // namespace kiln
