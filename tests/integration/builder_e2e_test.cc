// The build platform end to end, all real: a kiln-orchestrator, the kiln-builder-agent process
// on a volume in a temporary directory, a git repository made here, a busybox base image
// imported into the volume's container storage, and Debian's docker-registry on 127.0.0.1. A
// workflow written here with the SDK (its worker runs in this process) runs FetchSource ->
// BuildImage -> [RunInImage] -> PushImage -> Housekeeping on project/web:
//   - a cold build, then a warm rebuild after a one-file change: layers reused, only the
//     changed layer uploaded;
//   - a private step whose secret appears nowhere in the build log or the history;
//   - housekeeping keeping the last 2 images;
//   - a missing revision and a failing RUN: non-retryable failures with the reason;
//   - a cancel in the middle of a RUN that sleeps: the activity is canceled within 2 s and
//     its processes are gone;
//   - the agent exits 0 by itself once its queue has drained.
// Skipped, with a message saying why, only where podman cannot run containers at all (a
// failure instead with KILN_REQUIRE_PODMAN=1).
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>

#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "builder-agent/podman/podman.h"
#include "common/proto_time.h"
#include "kiln/api/v1/log_service.grpc.pb.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/client.h"
#include "sdk/workflow.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/git_require.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
namespace pb = ::kiln::platform::v1;
namespace fs = std::filesystem;
using sdk::FromPayloadAt;
using sdk::ToPayloads;

constexpr char kProject[] = "web";
constexpr char kWorkflowQueue[] = "builds";
constexpr char kSecretValue[] = "hunter2-s3cr3t-Vb7q";
constexpr absl::Duration kBuildTimeout = absl::Seconds(120);

sdk::ActivityOptions OnAgent() {
  sdk::ActivityOptions options;
  options.task_queue = "project/web";
  options.start_to_close_timeout = absl::Minutes(3);
  options.heartbeat_timeout = absl::Seconds(10);
  options.retry_policy.set_maximum_attempts(1);
  return options;
}

template <class Result>
sdk::Task<absl::StatusOr<Result>> Call(sdk::WorkflowContext& ctx, const char* activity,
                                       const google::protobuf::Message& input) {
  auto result = co_await ctx.ExecuteActivity(activity, ToPayloads(input), OnAgent());
  if (!result.ok()) co_return result.status();
  co_return FromPayloadAt<Result>(*result, 0);
}

// Input: repository URL, revision, build id, whether to run the private step, keep_last.
// Result: FetchSourceResult, BuildImageResult, PushImageResult, HousekeepingResult.
sdk::Task<absl::StatusOr<api::Payloads>> BuildCommit(sdk::WorkflowContext& ctx,
                                                     api::Payloads input) {
  pb::FetchSourceInput fetch_in;
  fetch_in.set_project_id(kProject);
  fetch_in.set_repository_url(FromPayloadAt<std::string>(input, 0).value_or(""));
  fetch_in.set_revision(FromPayloadAt<std::string>(input, 1).value_or(""));
  const std::string build_id = FromPayloadAt<std::string>(input, 2).value_or("");
  const bool private_step = FromPayloadAt<std::string>(input, 3).value_or("") == "private";
  const int64_t keep_last = FromPayloadAt<int64_t>(input, 4).value_or(0);

  auto fetched = co_await Call<pb::FetchSourceResult>(ctx, "kiln.builder.FetchSource", fetch_in);
  if (!fetched.ok()) co_return fetched.status();
  pb::BuildImageInput build_in;
  build_in.set_project_id(kProject);
  build_in.set_build_id(build_id);
  build_in.set_commit_sha(fetched->commit_sha());
  build_in.set_context_dir(fetched->worktree_dir());
  auto built = co_await Call<pb::BuildImageResult>(ctx, "kiln.builder.BuildImage", build_in);
  if (!built.ok()) co_return built.status();
  if (private_step) {
    pb::RunInImageInput run_in;
    run_in.set_project_id(kProject);
    run_in.set_image_ref(built->image_ref());
    run_in.set_name("unit-tests");
    // Prints the secret (the output stays on the machine) and fails without it.
    run_in.add_command("sh");
    run_in.add_command("-c");
    run_in.add_command("echo \"db password is $DB_PASSWORD\"; test -n \"$DB_PASSWORD\"");
    run_in.add_secret_names("DB_PASSWORD");
    auto ran = co_await Call<pb::RunInImageResult>(ctx, "kiln.builder.RunInImage", run_in);
    if (!ran.ok()) co_return ran.status();
  }
  pb::PushImageInput push_in;
  push_in.set_project_id(kProject);
  push_in.set_image_ref(built->image_ref());
  auto pushed = co_await Call<pb::PushImageResult>(ctx, "kiln.builder.PushImage", push_in);
  if (!pushed.ok()) co_return pushed.status();
  pb::HousekeepingInput house_in;
  house_in.set_project_id(kProject);
  house_in.set_keep_last(static_cast<int32_t>(keep_last));
  auto kept = co_await Call<pb::HousekeepingResult>(ctx, "kiln.builder.Housekeeping", house_in);
  if (!kept.ok()) co_return kept.status();
  co_return ToPayloads(*fetched, *built, *pushed, *kept);
}

// Fetches and builds in a cancellation scope; when the workflow is asked to cancel, it cancels
// the build and waits on a timer so that the agent's answer (ActivityTaskCanceled) is
// recorded while the run is still open.
sdk::Task<absl::StatusOr<api::Payloads>> CancelledBuild(sdk::WorkflowContext& ctx,
                                                        api::Payloads input) {
  pb::FetchSourceInput fetch_in;
  fetch_in.set_project_id(kProject);
  fetch_in.set_repository_url(FromPayloadAt<std::string>(input, 0).value_or(""));
  fetch_in.set_revision(FromPayloadAt<std::string>(input, 1).value_or(""));
  auto fetched = co_await Call<pb::FetchSourceResult>(ctx, "kiln.builder.FetchSource", fetch_in);
  if (!fetched.ok()) co_return fetched.status();
  pb::BuildImageInput build_in;
  build_in.set_project_id(kProject);
  build_in.set_build_id("slow");
  build_in.set_commit_sha(fetched->commit_sha());
  build_in.set_context_dir(fetched->worktree_dir());
  sdk::CancellationScope scope;
  auto build =
      ctx.ExecuteActivityIn(scope, "kiln.builder.BuildImage", ToPayloads(build_in), OnAgent());
  auto cancelled = ctx.CancellationRequested();
  size_t first = co_await sdk::WhenAny(build, cancelled);
  if (first == 0) co_return absl::InternalError("the slow build finished before the cancel");
  ctx.Cancel(scope);
  (void)co_await ctx.Sleep(absl::Seconds(4));
  co_return absl::CancelledError("build cancelled as asked");
}

using testutil::RequireGit;

using testutil::WriteFile;

// Pids of processes whose command line is exactly `argv` (NUL-separated in /proc).
std::vector<int> ProcessesRunning(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want += a + '\0';
  std::vector<int> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    // ReadFile, not an istreambuf_iterator: a process that exits while its cmdline is read
    // fails the read with ESRCH, which libstdc++'s filebuf throws through the iterator.
    if (testutil::ReadFile(entry.path() / "cmdline") == want) pids.push_back(std::stoi(name));
  }
  return pids;
}

std::string ReadBuildLog(sdk::Connection& connection, const std::string& workflow_id) {
  auto stub = api::LogService::NewStub(connection.channel());
  api::ReadLogRequest request;
  request.mutable_execution()->set_workflow_id(workflow_id);
  request.set_stream("build");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub->ReadLog(&ctx, request);
  std::string data;
  api::ReadLogResponse response;
  while (reader->Read(&response)) data += response.data();
  (void)reader->Finish();
  return data;
}

class Fixture {
 public:
  Fixture() : orchestrator_(dir_.path() + "/data") {}
  ~Fixture() {
    if (worker_) worker_->Stop();
    if (agent_ && agent_->Running()) agent_->Signal(SIGTERM);
    if (agent_) (void)agent_->Wait(absl::Seconds(20));
  }

  // False (after saying why) when podman cannot run containers here.
  bool Setup() {
    volume_ = dir_.path() + "/volume";
    auto podman = builder::Podman::Create({.volume = volume_});
    if (absl::IsUnavailable(podman.status())) {
      // KILN_REQUIRE_PODMAN=1 (hosts where podman must run) turns the skip into a failure.
      if (std::getenv("KILN_REQUIRE_PODMAN") != nullptr) {
        FAIL("podman required (KILN_REQUIRE_PODMAN) but cannot run: " << podman.status());
      }
      WARN("SKIPPED: podman cannot run containers on this host: " << podman.status());
      return false;
    }
    INFO(podman.status().ToString());
    REQUIRE(podman.ok());
    std::vector<std::string> podman_argv = {"/usr/bin/podman"};
    for (const auto& arg : (*podman)->GlobalArgs()) podman_argv.push_back(arg);
    absl::Status imported =
        testutil::ImportBusyboxImage(podman_argv, "localhost/busybox:latest", dir_.path() + "/bb");
    INFO(imported.ToString());
    REQUIRE(imported.ok());

    REQUIRE(orchestrator_.Start().ok());
    fs::create_directories(dir_.path() + "/registry");
    auto registry = testutil::RegistryProcess::Start(dir_.path() + "/registry");
    INFO(registry.status().ToString());
    REQUIRE(registry.ok());
    registry_ = *std::move(registry);
    metrics_port_ = testutil::FreePort();

    origin_ = dir_.path() + "/origin";
    fs::create_directories(origin_);
    RequireGit(origin_, {"init", "-q", "-b", "main"});
    // "Installs dependencies from a lock file", then copies the source: a source change
    // rebuilds only the last layer.
    WriteFile(origin_ + "/Containerfile",
              "FROM localhost/busybox:latest\n"
              "COPY deps.lock /app/deps.lock\n"
              "RUN cp /app/deps.lock /app/deps.installed && echo dependencies installed\n"
              "COPY src/ /app/src/\n");
    WriteFile(origin_ + "/deps.lock", "left-pad 1.3.0\n");
    WriteFile(origin_ + "/src/main.txt", "version 1\n");
    RequireGit(origin_, {"add", "-A"});
    RequireGit(origin_, {"commit", "-q", "-m", "v1"});

    client_ = std::make_unique<sdk::Client>(orchestrator_.connection());
    worker_ = std::make_unique<sdk::WorkflowWorker>(orchestrator_.connection(), kWorkflowQueue,
                                                    sdk::WorkflowWorkerOptions{});
    worker_->Register("BuildCommit", BuildCommit);
    worker_->Register("CancelledBuild", CancelledBuild);
    worker_->Start();
    return true;
  }

  std::string Commit(const std::string& file, const std::string& content,
                     const std::string& message) {
    WriteFile(origin_ + "/" + file, content);
    RequireGit(origin_, {"add", "-A"});
    RequireGit(origin_, {"commit", "-q", "-m", message});
    return RequireGit(origin_, {"rev-parse", "HEAD"});
  }

  // What the machine provider does when a build is queued: wake the agent if it sleeps.
  void WakeAgent() {
    if (agent_ && agent_->Running()) return;
    if (agent_) {
      auto code = agent_->Wait(absl::Seconds(5));
      INFO(agent_->Output());
      REQUIRE(code.ok());
      REQUIRE(*code == 0);
    }
    auto process = testutil::Process::Start(
        testutil::BinaryPath("kiln-builder-agent"),
        {"--orchestrator", orchestrator_.address(), "--project", kProject, "--volume", volume_,
         "--registry", registry_->address(), "--no-registry-tls-verify", "--idle-grace", "4",
         "--keep-last", "5", "--metrics-listen", absl::StrCat("127.0.0.1:", metrics_port_),
         "--token", orchestrator_.AgentToken(kProject)},
        absl::StrCat(dir_.path(), "/agent-", ++agent_starts_, ".log"),
        {absl::StrCat("KILN_SECRET_DB_PASSWORD=", kSecretValue)});
    INFO(process.status().ToString());
    REQUIRE(process.ok());
    agent_ = *std::move(process);
  }

  // Runs BuildCommit to its end; returns its results.
  std::tuple<pb::FetchSourceResult, pb::BuildImageResult, pb::PushImageResult,
             pb::HousekeepingResult>
  Build(const std::string& id, const std::string& revision, const std::string& mode,
        int64_t keep_last) {
    WakeAgent();
    auto handle = client_->StartWorkflow({.id = id, .task_queue = kWorkflowQueue}, "BuildCommit",
                                         ToPayloads(origin_, revision, id, mode, keep_last));
    REQUIRE(handle.ok());
    auto result = client_->GetResult(*handle, kBuildTimeout);
    INFO("workflow " << id << ": " << result.status() << "\nagent log:\n"
                     << agent_->Output() << "\nbuild log:\n"
                     << ReadBuildLog(orchestrator_.connection(), id));
    REQUIRE(result.ok());
    auto decoded = sdk::FromPayloads<pb::FetchSourceResult, pb::BuildImageResult,
                                     pb::PushImageResult, pb::HousekeepingResult>(*result);
    REQUIRE(decoded.ok());
    return *decoded;
  }

  // Runs BuildCommit expecting it to fail; returns the failure of its failed activity.
  api::Failure BuildFails(const std::string& id, const std::string& revision) {
    WakeAgent();
    auto handle = client_->StartWorkflow({.id = id, .task_queue = kWorkflowQueue}, "BuildCommit",
                                         ToPayloads(origin_, revision, id, "public", int64_t{2}));
    REQUIRE(handle.ok());
    auto result = client_->GetResult(*handle, kBuildTimeout);
    REQUIRE_FALSE(result.ok());
    auto history = client_->GetHistory(*handle);
    REQUIRE(history.ok());
    for (const auto& e : history->events()) {
      if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_FAILED) {
        return e.activity_task_failed_event_attributes().failure();
      }
    }
    FAIL("no ActivityTaskFailed in " << id << ": " << history->DebugString());
    return {};
  }

  testutil::TempDir dir_;
  testutil::OrchestratorProcess orchestrator_;
  std::unique_ptr<testutil::RegistryProcess> registry_;
  std::string volume_;
  std::string origin_;
  int metrics_port_ = 0;
  int agent_starts_ = 0;
  std::unique_ptr<testutil::Process> agent_;
  std::unique_ptr<sdk::Client> client_;
  std::unique_ptr<sdk::WorkflowWorker> worker_;
};

TEST_CASE("Builds on the agent: cold, warm, private step, housekeeping, cancel, drain",
          "[podman][builder]") {
  Fixture f;
  if (!f.Setup()) return;

  // ---- Cold build.
  auto [fetch1, build1, push1, kept1] = f.Build("build-1", "main", "public", 2);
  INFO("cold build: " << build1.ShortDebugString() << " push: " << push1.ShortDebugString());
  REQUIRE(fetch1.mirror_created());
  REQUIRE(fetch1.commit_sha().size() == 40);
  REQUIRE(build1.image_ref() == "kiln/web:" + fetch1.commit_sha());
  INFO("build log:\n" << ReadBuildLog(f.orchestrator_.connection(), "build-1"));
  // The Containerfile's steps but FROM.
  REQUIRE(build1.steps() == 3);
  REQUIRE(build1.steps_cached() == 0);
  REQUIRE(absl::StartsWith(push1.digest(), "sha256:"));
  REQUIRE(push1.reference() == absl::StrCat(f.registry_->address(), "/kiln/web@", push1.digest()));
  REQUIRE(push1.blobs_pushed() == 4);  // the base layer and three of ours
  REQUIRE(push1.blobs_reused() == 0);
  REQUIRE(kept1.images_kept() == 1);

  // Metrics are served while the agent runs (it waits out its idle grace now).
  std::string metrics;
  REQUIRE(testutil::WaitFor(
      [&] {
        auto got = testutil::HttpGet("127.0.0.1", f.metrics_port_, "/metrics");
        if (!got.ok()) return false;
        metrics = *got;
        return true;
      },
      absl::Seconds(3)));
  REQUIRE(absl::StrContains(metrics, "kiln_builder_step_duration_seconds"));
  REQUIRE(absl::StrContains(metrics, "kiln_builder_push_blobs_total"));

  // ---- Warm rebuild after a one-file change: only the last layer is new.
  const std::string v2 = f.Commit("src/main.txt", "version 2\n", "v2");
  auto [fetch2, build2, push2, kept2] = f.Build("build-2", v2, "public", 2);
  INFO("warm build: " << build2.ShortDebugString() << " push: " << push2.ShortDebugString());
  REQUIRE(fetch2.commit_sha() == v2);
  REQUIRE_FALSE(fetch2.mirror_created());
  REQUIRE(build2.steps() == build1.steps());
  // The lock file's COPY and the RUN that installs from it.
  REQUIRE(build2.steps_cached() == 2);
  REQUIRE(push2.blobs_pushed() == 1);
  REQUIRE(push2.blobs_reused() == 3);
  REQUIRE(push2.digest() != push1.digest());
  // Only the changed layer (and the config) travelled.
  REQUIRE(push1.bytes_pushed() > 0);
  REQUIRE(push2.bytes_pushed() > 0);
  REQUIRE(push2.bytes_pushed() < push1.bytes_pushed());

  // ---- A private step with a secret; housekeeping keeps the last 2 images.
  const std::string v3 = f.Commit("src/main.txt", "version 3\n", "v3");
  auto [fetch3, build3, push3, kept3] = f.Build("build-3", v3, "private", 2);
  REQUIRE(kept3.images_kept() == 2);
  REQUIRE(kept3.images_removed() == 1);
  const std::string log3 = ReadBuildLog(f.orchestrator_.connection(), "build-3");
  INFO("build log:\n" << log3);
  REQUIRE(absl::StrContains(log3, "[private step: unit-tests] ok"));
  REQUIRE_FALSE(absl::StrContains(log3, "db password is"));
  auto history3 = f.client_->GetHistory({.workflow_id = "build-3"});
  REQUIRE(history3.ok());
  for (std::string id : {"build-1", "build-2", "build-3"}) {
    REQUIRE_FALSE(absl::StrContains(ReadBuildLog(f.orchestrator_.connection(), id), kSecretValue));
    auto history = f.client_->GetHistory({.workflow_id = id});
    REQUIRE(history.ok());
    REQUIRE_FALSE(absl::StrContains(history->SerializeAsString(), kSecretValue));
    REQUIRE_FALSE(absl::StrContains(history->DebugString(), kSecretValue));
  }
  REQUIRE_FALSE(absl::StrContains(f.agent_->Output(), kSecretValue));

  // ---- What a retry cannot cure fails at once, non-retryable, with the reason.
  api::Failure missing = f.BuildFails("bad-revision", "no-such-branch");
  INFO(missing.DebugString());
  REQUIRE(missing.application_failure_info().type() == "SourceNotFound");
  REQUIRE(missing.application_failure_info().non_retryable());
  REQUIRE(absl::StrContains(missing.message(), "no-such-branch"));
  const std::string broken = f.Commit(
      "Containerfile", "FROM localhost/busybox:latest\nRUN echo building && exit 3\n", "broken");
  api::Failure failed = f.BuildFails("bad-containerfile", broken);
  INFO(failed.DebugString());
  REQUIRE(failed.application_failure_info().type() == "BuildFailed");
  REQUIRE(failed.application_failure_info().non_retryable());
  REQUIRE(absl::StrContains(ReadBuildLog(f.orchestrator_.connection(), "bad-containerfile"),
                            "building"));

  // ---- Cancel in the middle of a RUN that sleeps.
  const std::string slow =
      f.Commit("Containerfile",
               "FROM localhost/busybox:latest\nCOPY src/ /app/src/\nRUN sleep 61\n", "slow");
  f.WakeAgent();
  auto handle = f.client_->StartWorkflow({.id = "slow-1", .task_queue = kWorkflowQueue},
                                         "CancelledBuild", ToPayloads(f.origin_, slow));
  REQUIRE(handle.ok());
  const std::vector<std::string> sleeper = {"sleep", "61"};
  REQUIRE(testutil::WaitFor([&] { return !ProcessesRunning(sleeper).empty(); }, absl::Seconds(60)));
  {
    grpc::ClientContext ctx;
    api::RequestCancelWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id("slow-1");
    request.set_identity("test");
    api::RequestCancelWorkflowExecutionResponse response;
    REQUIRE(f.orchestrator_.connection()
                .workflow_service()
                .RequestCancelWorkflowExecution(&ctx, request, &response)
                .ok());
  }
  // The RUN's processes are gone, the activity canceled.
  REQUIRE(testutil::WaitFor([&] { return ProcessesRunning(sleeper).empty(); }, absl::Seconds(5)));
  auto closed = f.client_->GetResult(*handle, absl::Seconds(30));
  REQUIRE(absl::IsCancelled(closed.status()));
  auto history = f.client_->GetHistory(*handle);
  REQUIRE(history.ok());
  absl::Time cancel_requested = absl::InfiniteFuture(), canceled = absl::InfiniteFuture();
  for (const auto& e : history->events()) {
    if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED) {
      cancel_requested = FromProto(e.event_time());
    } else if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_CANCELED) {
      canceled = FromProto(e.event_time());
    }
  }
  INFO("history:\n" << history->DebugString());
  REQUIRE(cancel_requested != absl::InfiniteFuture());
  REQUIRE(canceled != absl::InfiniteFuture());
  REQUIRE(canceled - cancel_requested < absl::Seconds(2));

  // ---- Drained: the agent exits 0 by itself within its idle grace (4 s) plus slack.
  absl::Time since = absl::Now();
  auto code = f.agent_->Wait(absl::Seconds(15));
  INFO(f.agent_->Output());
  REQUIRE(code.ok());
  REQUIRE(*code == 0);
  REQUIRE(absl::Now() - since < absl::Seconds(10));
  REQUIRE(absl::StrContains(f.agent_->Output(), "agent.drained"));
}

}  // namespace
}  // namespace kiln
