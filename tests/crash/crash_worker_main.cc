// kiln_crash_worker: the worker process the crash matrix kills with SIGKILL. It runs real SDK
// workflow and activity code on task queue "crash" (kCrashQueue in crash_load.h), so a kill
// loses cached workflow state, running activities and their unsent answers, as a production
// worker's death would.
//   Mixed  input (W, R, B): activity Echo(W) -> a; kiln.builder.FetchSource of git repository R
//          on a kiln-builder-agent (queue project/crash) -> commit; when B is "build", a
//          kiln.builder.BuildImage of the fetched tree's Containerfile on the agent (a real
//          podman build); a durable timer; child workflow Child(a) -> c; waits for signal
//          "go" -> s; activity Echo(a/c/s/commit[/built]); completes with that (ExpectedResult
//          in crash_load.h).
//   Child  input X: a durable timer, then activity Upper(X + "-child").
// Each activity works kActivityWorkMs, between the lines crash_worker.activity_begin and
// crash_worker.activity_end on stderr, which tell the matrix when a kill lands mid-activity.
// Usage: kiln_crash_worker --orchestrator HOST:PORT (token in $KILN_TOKEN).
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/signals.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/activity_worker.h"
#include "sdk/connection.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/crash/crash_load.h"

namespace kiln::crash {
namespace {

using sdk::FromPayloadAt;
using sdk::ToPayloads;
using sdk::api::Payloads;

// Short timeouts and a capped retry interval: an activity whose worker was killed is retried
// within seconds, so the matrix drains soon after the last restart.
sdk::ActivityOptions Quick() {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(2);
  options.retry_policy.mutable_initial_interval()->set_nanos(200'000'000);
  options.retry_policy.mutable_maximum_interval()->set_seconds(1);
  return options;
}

sdk::Task<absl::StatusOr<std::string>> Call(sdk::WorkflowContext& ctx, const char* activity,
                                            std::string argument) {
  auto result = co_await ctx.ExecuteActivity(activity, ToPayloads(argument), Quick());
  if (!result.ok()) co_return result.status();
  co_return FromPayloadAt<std::string>(*result, 0);
}

// The agent's step: a fetch from a local repository (no podman needed). A heartbeat timeout
// hands the step of a killed agent to the next one within seconds.
sdk::Task<absl::StatusOr<platform::v1::FetchSourceResult>> FetchOnAgent(sdk::WorkflowContext& ctx,
                                                                        std::string repository) {
  platform::v1::FetchSourceInput in;
  in.set_project_id(kAgentProject);
  in.set_repository_url(std::move(repository));
  sdk::ActivityOptions options = Quick();
  options.task_queue = AgentQueue();
  options.start_to_close_timeout = absl::Seconds(20);
  options.heartbeat_timeout = absl::Seconds(2);
  auto result = co_await ctx.ExecuteActivity("kiln.builder.FetchSource", ToPayloads(in), options);
  if (!result.ok()) co_return result.status();
  co_return FromPayloadAt<platform::v1::FetchSourceResult>(*result, 0);
}

// A build on the agent: podman builds the fetched tree's Containerfile (FROM scratch, so no
// base image). The agent heartbeats while podman runs; a killed agent's build goes to the next
// agent after the heartbeat timeout.
sdk::Task<absl::StatusOr<std::string>> BuildOnAgent(
    sdk::WorkflowContext& ctx, const platform::v1::FetchSourceResult& fetched) {
  platform::v1::BuildImageInput in;
  in.set_project_id(kAgentProject);
  in.set_build_id(ctx.info().workflow_id);
  in.set_commit_sha(fetched.commit_sha());
  in.set_context_dir(fetched.worktree_dir());
  in.set_containerfile("Containerfile");
  in.set_network("none");
  sdk::ActivityOptions options = Quick();
  options.task_queue = AgentQueue();
  options.start_to_close_timeout = absl::Seconds(60);
  options.heartbeat_timeout = absl::Seconds(kBuildHeartbeatTimeoutS);
  auto result = co_await ctx.ExecuteActivity("kiln.builder.BuildImage", ToPayloads(in), options);
  if (!result.ok()) co_return result.status();
  auto built = FromPayloadAt<platform::v1::BuildImageResult>(*result, 0);
  if (!built.ok()) co_return built.status();
  if (built->image_id().empty()) co_return absl::InternalError("the build returned no image id");
  co_return std::string(kBuiltMark);
}

sdk::Task<absl::StatusOr<Payloads>> Child(sdk::WorkflowContext& ctx, Payloads input) {
  auto text = FromPayloadAt<std::string>(input, 0);
  if (!text.ok()) co_return text.status();
  absl::Status slept = co_await ctx.Sleep(absl::Milliseconds(kChildTimerMs));
  if (!slept.ok()) co_return slept;
  auto upper = co_await Call(ctx, "Upper", *text + "-child");
  if (!upper.ok()) co_return upper.status();
  co_return ToPayloads(*upper);
}

sdk::Task<absl::StatusOr<Payloads>> Mixed(sdk::WorkflowContext& ctx, Payloads input) {
  auto text = FromPayloadAt<std::string>(input, 0);
  if (!text.ok()) co_return text.status();
  auto repository = FromPayloadAt<std::string>(input, 1);
  if (!repository.ok()) co_return repository.status();
  auto build = FromPayloadAt<std::string>(input, 2);
  if (!build.ok()) co_return build.status();
  auto echoed = co_await Call(ctx, "Echo", *text);
  if (!echoed.ok()) co_return echoed.status();
  auto fetched = co_await FetchOnAgent(ctx, *repository);
  if (!fetched.ok()) co_return fetched.status();
  std::string commit = fetched->commit_sha();
  if (*build == kBuildInput) {
    auto built = co_await BuildOnAgent(ctx, *fetched);
    if (!built.ok()) co_return built.status();
    absl::StrAppend(&commit, "/", *built);
  }
  absl::Status slept = co_await ctx.Sleep(absl::Milliseconds(kParentTimerMs));
  if (!slept.ok()) co_return slept;
  sdk::ChildWorkflowOptions child_options;
  child_options.workflow_id = ChildWorkflowId(ctx.info().workflow_id);
  child_options.task_timeout = absl::Seconds(kTaskTimeoutS);
  sdk::ChildWorkflow child = ctx.ExecuteChildWorkflow("Child", ToPayloads(*echoed), child_options);
  auto child_result = co_await child.result;
  if (!child_result.ok()) co_return child_result.status();
  auto child_text = FromPayloadAt<std::string>(*child_result, 0);
  if (!child_text.ok()) co_return child_text.status();
  Payloads signal = co_await ctx.GetSignalChannel(kSignalName).Receive();
  auto signal_text = FromPayloadAt<std::string>(signal, 0);
  if (!signal_text.ok()) co_return signal_text.status();
  auto joined = co_await Call(
      ctx, "Echo", absl::StrCat(*echoed, "/", *child_text, "/", *signal_text, "/", commit));
  if (!joined.ok()) co_return joined.status();
  co_return ToPayloads(*joined);
}

absl::Status RegisterActivities(sdk::ActivityWorker& worker) {
  auto string_activity = [](std::string (*fn)(std::string)) {
    return [fn](sdk::ActivityContext&, const Payloads& input) -> absl::StatusOr<Payloads> {
      auto arg = FromPayloadAt<std::string>(input, 0);
      if (!arg.ok()) return arg.status();
      // Work that takes a while, so that a kill finds activities running and their answers
      // unsent; the lines say when one runs.
      std::fprintf(stderr, "crash_worker.activity_begin\n");
      absl::SleepFor(absl::Milliseconds(kActivityWorkMs));
      std::fprintf(stderr, "crash_worker.activity_end\n");
      return ToPayloads(fn(*arg));
    };
  };
  absl::Status echo = worker.Register("Echo", string_activity([](std::string s) { return s; }));
  if (!echo.ok()) return echo;
  return worker.Register("Upper", string_activity([](std::string s) {
                           for (char& c : s)
                             c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                           return s;
                         }));
}

int Run(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--orchestrator") {
    std::fprintf(stderr, "usage: kiln_crash_worker --orchestrator HOST:PORT\n");
    return 2;
  }
  BlockTerminationSignals();
  const char* token = std::getenv("KILN_TOKEN");
  sdk::Connection connection(argv[2], {.token = token == nullptr ? "" : token});
  sdk::ActivityWorkerOptions activity_options;
  activity_options.identity = "kiln-crash-worker";
  activity_options.max_concurrent = 8;
  sdk::ActivityWorker activities(connection, kCrashQueue, activity_options);
  absl::Status ready = RegisterActivities(activities);
  if (ready.ok()) ready = activities.Start();
  if (!ready.ok()) {
    std::fprintf(stderr, "kiln_crash_worker: %s\n", ready.ToString().c_str());
    return 1;
  }
  sdk::WorkflowWorkerOptions workflow_options;
  workflow_options.identity = "kiln-crash-worker";
  workflow_options.eager_activities = &activities;
  sdk::WorkflowWorker workflows(connection, kCrashQueue, workflow_options);
  workflows.Register("Mixed", Mixed);
  workflows.Register("Child", Child);
  workflows.Start();
  std::fprintf(stderr, "crash_worker.started\n");
  WaitForTerminationSignal();
  workflows.Stop();
  activities.Stop();
  return 0;
}

}  // namespace
}  // namespace kiln::crash

int main(int argc, char** argv) { return kiln::crash::Run(argc, argv); }
