#include "worker/workflows/deployment_workflow.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/converter.h"
#include "worker/workflows/platform.h"

namespace kiln::worker {
namespace {

using api::Payloads;
using sdk::FromPayloadAt;
using sdk::ToPayloads;

// A step on the machine that waits this long for the agent wakes the machine again.
constexpr absl::Duration kMachineScheduleToStart = absl::Seconds(10);
constexpr int kMaxWakes = 3;

// What one run keeps while it goes: the Deployment the query answers, and where its
// cancellation stands.
struct Run {
  sdk::WorkflowContext& ctx;
  pb::DeploymentRequest request;
  pb::ProjectConfig config;
  pb::Deployment deployment;
  sdk::CancellationScope scope;
  std::string machine_queue;

  void Upsert() {
    api::SearchAttributes attributes;
    auto& fields = *attributes.mutable_indexed_fields();
    fields[kAttrProject] = Keyword(deployment.project_id());
    fields[kAttrBranch] = Keyword(deployment.branch());
    fields[kAttrCommit] = Keyword(deployment.commit_sha());
    fields[kAttrStatus] = Keyword(StateName(deployment.state()));
    fields[kAttrDeploymentId] = Keyword(deployment.id());
    if (!deployment.image_digest().empty()) {
      fields[kAttrImageDigest] = Keyword(deployment.image_digest());
    }
    if (!deployment.superseded_by().empty()) {
      fields[kAttrSupersededBy] = Keyword(deployment.superseded_by());
    }
    ctx.UpsertSearchAttributes(attributes);
  }

  void SetState(pb::DeploymentState state) {
    if (deployment.state() == state) return;
    deployment.set_state(state);
    Upsert();
  }

  pb::DeploymentStep* Begin(const std::string& name) {
    pb::DeploymentStep* step = deployment.add_steps();
    step->set_name(name);
    step->set_status("running");
    *step->mutable_started_time() = TimestampOf(ctx.Now());
    deployment.clear_progress();
    return step;
  }

  void End(pb::DeploymentStep* step, const std::string& status, const std::string& detail = "") {
    step->set_status(status);
    if (!detail.empty()) step->set_detail(detail);
    *step->mutable_duration() = DurationOf(ctx.Now() - FromProto(step->started_time()));
  }

  void Skip(const std::string& name, const std::string& detail) {
    End(Begin(name), "skipped", detail);
  }

  // Whether the workflow was asked to stop (a cancel, or a newer push).
  bool Stopping() { return ctx.cancel_requested() || scope.cancelled(); }
};

sdk::ActivityOptions OnPlatform(absl::Duration start_to_close, int attempts) {
  sdk::ActivityOptions options;
  options.task_queue = kPlatformTaskQueue;
  options.start_to_close_timeout = start_to_close;
  options.retry_policy.set_maximum_attempts(attempts);
  *options.retry_policy.mutable_initial_interval() = DurationOf(absl::Milliseconds(200));
  return options;
}

// Runs `activity` in the run's cancellation scope and cancels that scope when the workflow is
// asked to cancel meanwhile: the activity hears it through its heartbeat and stops.
sdk::Task<absl::StatusOr<Payloads>> Cancellable(Run& run, const std::string& activity,
                                                const Payloads& input,
                                                const sdk::ActivityOptions& options) {
  if (run.Stopping()) co_return absl::CancelledError("deployment canceled");
  auto result = run.ctx.ExecuteActivityIn(run.scope, activity, input, options);
  auto cancel = run.ctx.CancellationRequested();
  size_t first = co_await sdk::WhenAny(result, cancel);
  if (first == 1 && !result.ready()) {
    run.ctx.Cancel(run.scope);
    co_return absl::CancelledError("deployment canceled");
  }
  co_return result.value();
}

sdk::Task<absl::Status> Wake(Run& run) {
  pb::WakeMachineInput input;
  input.set_project_id(run.config.id());
  input.set_provider(run.config.machine_provider());
  input.set_size(run.config.machine_size());
  input.set_deployment_id(run.deployment.id());
  auto woke = co_await Cancellable(run, kWakeMachineActivity, ToPayloads(input),
                                   OnPlatform(absl::Seconds(30), 3));
  if (!woke.ok()) co_return woke.status();
  co_return absl::OkStatus();
}

// A step on the project's machine. Not picked up within the schedule-to-start timeout: the
// machine is woken again and the step scheduled again, up to kMaxWakes times.
template <class Result>
sdk::Task<absl::StatusOr<Result>> OnMachine(Run& run, const char* activity,
                                            const google::protobuf::Message& input,
                                            absl::Duration start_to_close, int attempts) {
  sdk::ActivityOptions options;
  options.task_queue = run.machine_queue;
  options.schedule_to_start_timeout = run.config.machine_wake_timeout_ms() > 0
                                          ? absl::Milliseconds(run.config.machine_wake_timeout_ms())
                                          : kMachineScheduleToStart;
  options.start_to_close_timeout = start_to_close;
  options.heartbeat_timeout = absl::Seconds(30);
  options.retry_policy.set_maximum_attempts(attempts);
  *options.retry_policy.mutable_initial_interval() = DurationOf(absl::Milliseconds(500));
  for (int wake = 1;; ++wake) {
    auto result = co_await Cancellable(run, activity, ToPayloads(input), options);
    if (result.ok()) co_return FromPayloadAt<Result>(*result, 0);
    bool not_picked_up = absl::IsDeadlineExceeded(result.status()) &&
                         absl::StrContains(result.status().message(), "SCHEDULE_TO_START");
    if (!not_picked_up || wake >= kMaxWakes || run.Stopping()) co_return result.status();
    run.ctx.Log(LogLevel::kWarn, "deployment.machine_not_picked_up",
                {{"deployment", run.deployment.id()}, {"activity", activity}, {"wake", wake}});
    absl::Status woke = co_await Wake(run);
    if (!woke.ok()) co_return woke;
  }
}

// Fetch, then build and push unless the same content was built before. Fills the image.
sdk::Task<absl::Status> Build(Run& run) {
  const pb::ProjectConfig& config = run.config;
  run.SetState(pb::DEPLOYMENT_STATE_WAKING);
  pb::DeploymentStep* step = run.Begin("wake");
  absl::Status woke = co_await Wake(run);
  if (!woke.ok()) {
    run.End(step, run.Stopping() ? "canceled" : "failed", std::string(woke.message()));
    co_return woke;
  }
  run.End(step, "ok");

  run.SetState(pb::DEPLOYMENT_STATE_FETCHING);
  step = run.Begin("fetch");
  pb::FetchSourceInput fetch_in;
  fetch_in.set_project_id(config.id());
  fetch_in.set_repository_url(config.repository_url());
  fetch_in.set_revision(run.request.commit_sha().empty() ? run.request.branch()
                                                         : run.request.commit_sha());
  fetch_in.set_token_secret(config.git_token_secret());
  fetch_in.set_context(config.context());
  fetch_in.set_containerfile(config.containerfile());
  auto fetched = co_await OnMachine<pb::FetchSourceResult>(run, "kiln.builder.FetchSource",
                                                           fetch_in, absl::Minutes(10), 3);
  if (!fetched.ok()) {
    run.End(step, run.Stopping() ? "canceled" : "failed", std::string(fetched.status().message()));
    co_return fetched.status();
  }
  run.deployment.set_commit_sha(fetched->commit_sha());
  run.Upsert();
  run.End(step, "ok",
          absl::StrCat(fetched->received_objects(), " objects, ", fetched->files_written(),
                       " files written"));

  run.deployment.set_build_key(BuildKey(config, fetched->tree_id(), fetched->containerfile_id()));
  for (const pb::KnownBuild& known : run.request.known_builds()) {
    if (run.deployment.build_key().empty() || known.build_key() != run.deployment.build_key()) {
      continue;
    }
    run.deployment.set_build_skipped(true);
    run.deployment.set_image_digest(known.image_digest());
    run.deployment.set_image_reference(known.image_reference());
    std::string detail = absl::StrCat("same content as deployment ", known.deployment_id(), ": ",
                                      known.image_digest());
    run.Skip("build", detail);
    run.Skip("push", detail);
    co_return absl::OkStatus();
  }

  run.SetState(pb::DEPLOYMENT_STATE_BUILDING);
  step = run.Begin("build");
  pb::BuildImageInput build_in;
  build_in.set_project_id(config.id());
  build_in.set_build_id(run.deployment.id());
  build_in.set_commit_sha(fetched->commit_sha());
  build_in.set_context_dir(config.context().empty()
                               ? fetched->worktree_dir()
                               : absl::StrCat(fetched->worktree_dir(), "/", config.context()));
  build_in.set_containerfile(config.containerfile());
  build_in.mutable_build_args()->insert(config.build_args().begin(), config.build_args().end());
  build_in.set_network(config.build_network());
  auto built = co_await OnMachine<pb::BuildImageResult>(run, "kiln.builder.BuildImage", build_in,
                                                        absl::Minutes(30), 2);
  if (!built.ok()) {
    run.End(step, run.Stopping() ? "canceled" : "failed", std::string(built.status().message()));
    co_return built.status();
  }
  run.End(step, "ok",
          absl::StrCat(built->steps(), " steps, ", built->steps_cached(), " from cache"));

  run.SetState(pb::DEPLOYMENT_STATE_PUSHING);
  step = run.Begin("push");
  pb::PushImageInput push_in;
  push_in.set_project_id(config.id());
  push_in.set_image_ref(built->image_ref());
  push_in.set_repository(config.image_repository());
  auto pushed = co_await OnMachine<pb::PushImageResult>(run, "kiln.builder.PushImage", push_in,
                                                        absl::Minutes(30), 3);
  if (!pushed.ok()) {
    run.End(step, run.Stopping() ? "canceled" : "failed", std::string(pushed.status().message()));
    co_return pushed.status();
  }
  run.deployment.set_image_digest(pushed->digest());
  run.deployment.set_image_reference(pushed->reference());
  run.End(
      step, "ok",
      absl::StrCat(pushed->blobs_pushed(), " blobs pushed, ", pushed->blobs_reused(), " reused"));
  run.Upsert();
  co_return absl::OkStatus();
}

sdk::Task<absl::Status> Deploy(Run& run) {
  run.SetState(pb::DEPLOYMENT_STATE_DEPLOYING);
  pb::DeploymentStep* step = run.Begin("deploy");
  if (run.config.deploy_target() == "none") {
    run.End(step, "skipped", "deploy target none: build only");
    co_return absl::OkStatus();
  }
  pb::DeployInput input;
  input.set_project_id(run.config.id());
  input.set_deployment_id(run.deployment.id());
  input.set_target(run.config.deploy_target());
  input.set_slot(run.request.slot());
  input.set_public_port(run.request.public_port());
  input.set_image_reference(run.deployment.image_reference());
  input.set_health_path(run.config.health_path());
  sdk::ActivityOptions options = OnPlatform(absl::Minutes(3), 2);
  options.heartbeat_timeout = absl::Seconds(20);
  auto deployed = co_await Cancellable(run, kDeployActivity, ToPayloads(input), options);
  if (!deployed.ok()) {
    run.End(step, run.Stopping() ? "canceled" : "failed", std::string(deployed.status().message()));
    co_return deployed.status();
  }
  auto result = FromPayloadAt<pb::DeployResult>(*deployed, 0);
  if (!result.ok()) co_return result.status();
  run.deployment.set_url(result->url());
  *run.deployment.mutable_healthy_time() = TimestampOf(run.ctx.Now());
  run.End(step, "ok",
          absl::StrCat(result->url(), " healthy after ",
                       absl::FormatDuration(FromProto(result->health_duration())),
                       result->previous_container().empty()
                           ? ""
                           : absl::StrCat(", replaced ", result->previous_container())));
  co_return absl::OkStatus();
}

// Best effort: the deployment already runs.
sdk::Task<void> Housekeeping(Run& run) {
  pb::DeploymentStep* step = run.Begin("housekeeping");
  // The machine may have gone to sleep while the deploy ran: wake it (nothing if awake) rather
  // than wait out the pickup timeout.
  if (absl::Status woke = co_await Wake(run); !woke.ok()) {
    run.End(step, "failed", std::string(woke.message()));
    co_return;
  }
  pb::HousekeepingInput input;
  input.set_project_id(run.config.id());
  auto kept = co_await OnMachine<pb::HousekeepingResult>(run, "kiln.builder.Housekeeping", input,
                                                         absl::Minutes(10), 2);
  if (!kept.ok()) {
    run.End(step, "failed", std::string(kept.status().message()));
    co_return;
  }
  run.End(step, "ok",
          absl::StrCat(kept->images_removed(), " images removed, ",
                       static_cast<int>(kept->volume_used() * 100), "% of the volume used",
                       kept->storage_reset() ? ", storage reset" : ""));
}

}  // namespace

sdk::Task<absl::StatusOr<Payloads>> DeploymentWorkflow(sdk::WorkflowContext& ctx, Payloads input) {
  auto request = FromPayloadAt<pb::DeploymentRequest>(input, 0);
  if (!request.ok()) co_return request.status();
  // Shared with the query handler, which may answer after the coroutine has finished.
  auto run = std::make_shared<Run>(Run{.ctx = ctx,
                                       .request = *request,
                                       .config = WithDefaults(request->config()),
                                       .deployment = {},
                                       .scope = {},
                                       .machine_queue = ProjectTaskQueue(request->config().id())});
  pb::Deployment& d = run->deployment;
  d.set_id(request->deployment_id());
  d.set_project_id(run->config.id());
  d.set_branch(request->branch());
  d.set_commit_sha(request->commit_sha());
  d.set_trigger(request->trigger());
  d.set_message(request->message());
  d.set_slot(request->slot());
  d.set_rollback_of(request->rollback_of());
  d.set_workflow_id(ctx.info().workflow_id);
  *d.mutable_created_time() = TimestampOf(ctx.Now());
  if (request->has_received_time()) *d.mutable_received_time() = request->received_time();
  d.set_state(pb::DEPLOYMENT_STATE_QUEUED);
  ctx.SetQueryHandler(kStateQuery, [run](const Payloads&) -> absl::StatusOr<Payloads> {
    return ToPayloads(run->deployment);
  });
  run->Upsert();

  absl::Status status;
  if (!request->image_reference().empty()) {
    // A rollback: the image exists.
    d.set_image_digest(request->image_digest());
    d.set_image_reference(request->image_reference());
    d.set_build_skipped(true);
    std::string detail = absl::StrCat("rollback to ", request->rollback_of());
    run->Skip("build", detail);
  } else {
    const std::string config_key = ConfigKey(run->config);
    const pb::KnownBuild* same_commit = nullptr;
    for (const pb::KnownBuild& known : request->known_builds()) {
      if (!request->commit_sha().empty() && known.commit_sha() == request->commit_sha() &&
          known.config_key() == config_key) {
        same_commit = &known;
        break;
      }
    }
    if (same_commit != nullptr) {
      // This very commit was built under these settings: nothing to fetch.
      d.set_image_digest(same_commit->image_digest());
      d.set_image_reference(same_commit->image_reference());
      d.set_build_key(same_commit->build_key());
      d.set_build_skipped(true);
      run->Skip("build", absl::StrCat("commit built by deployment ", same_commit->deployment_id(),
                                      ": ", same_commit->image_digest()));
    } else {
      status = co_await Build(*run);
    }
  }
  if (status.ok()) status = co_await Deploy(*run);
  if (status.ok()) {
    d.set_state(pb::DEPLOYMENT_STATE_SUCCEEDED);
    *d.mutable_finished_time() = TimestampOf(ctx.Now());
    run->Upsert();
    // The machine is awake after a build; tidy its volume while the deployment serves.
    if (!d.build_skipped()) co_await Housekeeping(*run);
    co_return ToPayloads(d);
  }

  *d.mutable_finished_time() = TimestampOf(ctx.Now());
  if (run->Stopping() || absl::IsCancelled(status)) {
    // A newer push names itself in the cancel's reason, and in a signal that may come later.
    if (absl::StartsWith(ctx.cancel_cause(), kSupersededCause)) {
      d.set_superseded_by(ctx.cancel_cause().substr(std::string_view(kSupersededCause).size()));
    }
    auto& superseded = ctx.GetSignalChannel(kSupersededSignal);
    while (auto by = superseded.TryReceive()) {
      auto id = FromPayloadAt<std::string>(*by, 0);
      if (id.ok()) d.set_superseded_by(*id);
    }
    d.set_state(pb::DEPLOYMENT_STATE_CANCELED);
    d.set_error(d.superseded_by().empty() ? "canceled"
                                          : absl::StrCat("superseded by ", d.superseded_by()));
    run->Upsert();
    co_return absl::CancelledError(d.error());
  }
  d.set_state(pb::DEPLOYMENT_STATE_FAILED);
  d.set_error(std::string(status.message()));
  run->Upsert();
  co_return status;
}

}  // namespace kiln::worker
