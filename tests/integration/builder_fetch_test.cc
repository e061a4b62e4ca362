// kiln.builder.FetchSource through the real agent process, no podman needed: a workflow (SDK
// worker in this process) fetches over smart HTTP on 127.0.0.1 with a token the agent holds as
// a secret (KILN_SECRET_GIT_TOKEN): the input names the secret, the token reaches git and
// appears nowhere in the history, the build log or the agent's own log. A secret the agent
// does not have, and a wrong token, fail at once as non-retryable errors with the reason.
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "builder-agent/git/smart_http_server.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/client.h"
#include "sdk/workflow.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/git_require.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
namespace pb = ::kiln::platform::v1;
namespace fs = std::filesystem;

constexpr char kToken[] = "ghs_T0kenForTheFetchTest42";

// Input: repository URL, token secret name. Result: FetchSourceResult.
sdk::Task<absl::StatusOr<api::Payloads>> Fetch(sdk::WorkflowContext& ctx, api::Payloads input) {
  pb::FetchSourceInput in;
  in.set_project_id("api");
  in.set_repository_url(sdk::FromPayloadAt<std::string>(input, 0).value_or(""));
  in.set_revision("main");
  in.set_token_secret(sdk::FromPayloadAt<std::string>(input, 1).value_or(""));
  sdk::ActivityOptions options;
  options.task_queue = "project/api";
  options.start_to_close_timeout = absl::Minutes(1);
  options.retry_policy.set_maximum_attempts(3);
  co_return co_await ctx.ExecuteActivity("kiln.builder.FetchSource", sdk::ToPayloads(in), options);
}

std::string RunGit(const std::vector<std::string>& args) { return testutil::RequireGit("", args); }

TEST_CASE("FetchSource over smart HTTP takes its token from the agent's secrets", "[builder]") {
  testutil::TempDir dir;
  const std::string origin = dir.path() + "/repos/origin";
  fs::create_directories(origin);
  RunGit({"-C", origin, "init", "-q", "-b", "main"});
  std::ofstream(origin + "/README") << "hello\n";
  RunGit({"-C", origin, "add", "-A"});
  RunGit({"-C", origin, "commit", "-q", "-m", "one"});
  const std::string sha = RunGit({"-C", origin, "rev-parse", "HEAD"});
  auto server = builder::testing::SmartHttpServer::Start(dir.path() + "/repos", kToken);
  if (absl::IsFailedPrecondition(server.status())) {
    WARN("SKIPPED: " << server.status());
    return;
  }
  REQUIRE(server.ok());
  const std::string url = (*server)->Url("origin/.git");

  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  sdk::WorkflowWorker worker(orchestrator.connection(), "fetches", {});
  worker.Register("Fetch", Fetch);
  worker.Start();
  sdk::Client client(orchestrator.connection());
  auto agent = testutil::Process::Start(
      testutil::BinaryPath("kiln-builder-agent"),
      {"--orchestrator", orchestrator.address(), "--project", "api", "--volume",
       dir.path() + "/volume", "--idle-grace", "30", "--token", orchestrator.AgentToken("api")},
      dir.path() + "/agent.log", {absl::StrCat("KILN_SECRET_GIT_TOKEN=", kToken)});
  REQUIRE(agent.ok());

  auto run = [&](const std::string& id, const std::string& secret) {
    auto handle = client.StartWorkflow({.id = id, .task_queue = "fetches"}, "Fetch",
                                       sdk::ToPayloads(url, secret));
    REQUIRE(handle.ok());
    return client.GetResult(*handle, absl::Seconds(60));
  };
  auto failure_of = [&](const std::string& id) {
    auto history = client.GetHistory({.workflow_id = id});
    REQUIRE(history.ok());
    for (const auto& e : history->events()) {
      if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_FAILED) {
        return e.activity_task_failed_event_attributes().failure();
      }
    }
    FAIL("no ActivityTaskFailed in " << id);
    return api::Failure();
  };

  auto fetched = run("fetch-ok", "GIT_TOKEN");
  INFO(fetched.status() << "\n" << (*agent)->Output());
  REQUIRE(fetched.ok());
  auto result = sdk::FromPayloadAt<pb::FetchSourceResult>(*fetched, 0);
  REQUIRE(result.ok());
  REQUIRE(result->commit_sha() == sha);
  REQUIRE(fs::exists(result->worktree_dir() + "/README"));
  REQUIRE((*server)->authorized() > 0);

  // A secret this agent does not hold: non-retryable, naming it (3 attempts allowed: 1 made).
  REQUIRE_FALSE(run("fetch-unknown-secret", "NO_SUCH_SECRET").ok());
  api::Failure unknown = failure_of("fetch-unknown-secret");
  REQUIRE(unknown.application_failure_info().type() == "SecretNotConfigured");
  REQUIRE(unknown.application_failure_info().non_retryable());
  REQUIRE(absl::StrContains(unknown.message(), "NO_SUCH_SECRET"));

  // No token at all: the server refuses; non-retryable (a retry would be refused again).
  REQUIRE_FALSE(run("fetch-no-token", "").ok());
  api::Failure refused = failure_of("fetch-no-token");
  INFO(refused.DebugString());
  REQUIRE(refused.application_failure_info().non_retryable());

  // The token is nowhere but in the agent's environment.
  auto log_stub = api::LogService::NewStub(orchestrator.connection().channel());
  for (std::string id : {"fetch-ok", "fetch-unknown-secret", "fetch-no-token"}) {
    auto history = client.GetHistory({.workflow_id = id});
    REQUIRE(history.ok());
    REQUIRE_FALSE(absl::StrContains(history->SerializeAsString(), kToken));
    api::ReadLogRequest request;
    request.mutable_execution()->set_workflow_id(id);
    request.set_stream("build");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto reader = log_stub->ReadLog(&ctx, request);
    std::string log;
    api::ReadLogResponse response;
    while (reader->Read(&response)) log += response.data();
    (void)reader->Finish();
    REQUIRE_FALSE(absl::StrContains(log, kToken));
  }
  REQUIRE_FALSE(absl::StrContains((*agent)->Output(), kToken));
  worker.Stop();
  (*agent)->Signal(SIGTERM);
  REQUIRE((*agent)->Wait(absl::Seconds(20)).ok());
}

}  // namespace
}  // namespace kiln
