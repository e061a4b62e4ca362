#include "worker/activities/platform_activities.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "kiln/platform/v1/platform.pb.h"
#include "sdk/activity.h"
#include "sdk/converter.h"
#include "sdk/log_writer.h"
#include "worker/workflows/platform.h"

namespace kiln::worker {
namespace {

using sdk::FromPayloadAt;
using sdk::ToPayloads;

constexpr char kBuildLogStream[] = "build";

// Lines to the deployment's "build" stream; best effort (a deployment does not fail because
// its log could not be written).
class DeploymentLog {
 public:
  DeploymentLog(sdk::Connection* connection, const std::string& ns, const sdk::ActivityInfo& info) {
    if (connection == nullptr) return;
    api::WorkflowExecution run;
    run.set_workflow_id(info.workflow_id);
    run.set_run_id(info.run_id);
    sdk::LogWriterOptions options;
    options.ns = ns;
    options.max_delay = absl::ZeroDuration();
    options.retry_timeout = absl::Seconds(5);
    writer_ = std::make_unique<sdk::LogWriter>(*connection, run, kBuildLogStream, options);
  }
  ~DeploymentLog() { Flush(); }

  void Line(std::string_view line) {
    if (!writer_) return;
    absl::MutexLock lock(&mu_);
    absl::Status status = writer_->Append(absl::StrCat(std::string(line), "\n"));
    if (!status.ok() && !warned_) {
      warned_ = true;
      LogWarn("platform.log_write_failed", {{"status", status}});
    }
  }
  void Flush() {
    if (!writer_) return;
    absl::MutexLock lock(&mu_);
    (void)writer_->Flush();  // Best effort, as above.
  }

 private:
  absl::Mutex mu_;
  std::unique_ptr<sdk::LogWriter> writer_;
  bool warned_ = false;
};

absl::Status NonRetryable(const std::string& type, const absl::Status& status) {
  return sdk::ApplicationError(type, std::string(status.message()), /*non_retryable=*/true);
}

}  // namespace

absl::Status PlatformActivities::Register(sdk::ActivityWorker& worker) {
  RETURN_IF_ERROR(worker.Register(
      kWakeMachineActivity,
      [this](sdk::ActivityContext& ctx, const api::Payloads& input) { return Wake(ctx, input); }));
  RETURN_IF_ERROR(worker.Register(kDeployActivity,
                                  [this](sdk::ActivityContext& ctx, const api::Payloads& input) {
                                    return Deploy(ctx, input);
                                  }));
  return worker.Register(kStopSlotActivity,
                         [this](sdk::ActivityContext& ctx, const api::Payloads& input) {
                           return StopSlot(ctx, input);
                         });
}

absl::StatusOr<api::Payloads> PlatformActivities::Wake(sdk::ActivityContext& ctx,
                                                       const api::Payloads& payloads) {
  auto input = FromPayloadAt<pb::WakeMachineInput>(payloads, 0);
  if (!input.ok()) return NonRetryable("BadInput", input.status());
  std::string provider_name =
      input->provider().empty() ? std::string("process") : input->provider();
  auto provider = options_.machines.find(provider_name);
  if (provider == options_.machines.end() || provider->second == nullptr) {
    return sdk::ApplicationError("UnknownMachineProvider",
                                 absl::StrCat("no machine provider '", provider_name, "' here"),
                                 /*non_retryable=*/true);
  }
  WakeRequest request;
  request.project = input->project_id();
  request.size = input->size();
  if (options_.mint_agent_token) {
    auto token = options_.mint_agent_token(input->project_id());
    if (!token.ok()) return token.status();
    request.token = *std::move(token);
  }
  auto woke = provider->second->Wake(request);
  if (!woke.ok()) {
    if (absl::IsInvalidArgument(woke.status())) return NonRetryable("BadProject", woke.status());
    return woke.status();
  }
  if (!woke->already_awake) {
    DeploymentLog log(options_.connection, options_.ns, ctx.info());
    log.Line(absl::StrCat("[machine] woke the builder of ", input->project_id(), " (pid ",
                          woke->pid, ") in ", absl::FormatDuration(woke->took)));
  }
  pb::WakeMachineResult result;
  result.set_already_awake(woke->already_awake);
  result.set_pid(woke->pid);
  *result.mutable_took() = DurationOf(woke->took);
  return ToPayloads(result);
}

absl::StatusOr<api::Payloads> PlatformActivities::Deploy(sdk::ActivityContext& ctx,
                                                         const api::Payloads& payloads) {
  auto input = FromPayloadAt<pb::DeployInput>(payloads, 0);
  if (!input.ok()) return NonRetryable("BadInput", input.status());
  auto target = options_.targets.find(input->target());
  if (target == options_.targets.end() || target->second == nullptr) {
    return sdk::ApplicationError("UnknownDeployTarget",
                                 absl::StrCat("no deploy target '", input->target(), "' here"),
                                 /*non_retryable=*/true);
  }
  DeploymentLog log(options_.connection, options_.ns, ctx.info());
  DeployRequest request;
  request.project = input->project_id();
  request.deployment_id = input->deployment_id();
  request.slot = input->slot();
  request.image = input->image_reference();
  request.public_port = input->public_port();
  request.health_path = input->health_path().empty() ? "/" : input->health_path();
  auto deployed = target->second->Deploy(
      request,
      [&](std::string_view line) {
        log.Line(line);
        ctx.log().Info("deploy.line", LogField("line", line));
        ctx.Heartbeat();
      },
      [&] {
        ctx.Heartbeat();
        return ctx.cancelled();
      });
  log.Flush();
  if (!deployed.ok()) {
    if (absl::IsCancelled(deployed.status())) return sdk::CanceledError("deploy canceled");
    if (absl::IsFailedPrecondition(deployed.status()) ||
        absl::IsInvalidArgument(deployed.status())) {
      return NonRetryable("DeployFailed", deployed.status());
    }
    return deployed.status();
  }
  pb::DeployResult result;
  result.set_url(deployed->url);
  result.set_public_port(deployed->public_port);
  result.set_container(deployed->container);
  result.set_previous_container(deployed->previous_container);
  *result.mutable_pull_duration() = DurationOf(deployed->pull_duration);
  *result.mutable_start_duration() = DurationOf(deployed->start_duration);
  *result.mutable_health_duration() = DurationOf(deployed->health_duration);
  return ToPayloads(result);
}

absl::StatusOr<api::Payloads> PlatformActivities::StopSlot(sdk::ActivityContext& ctx,
                                                           const api::Payloads& payloads) {
  auto input = FromPayloadAt<pb::StopSlotInput>(payloads, 0);
  if (!input.ok()) return NonRetryable("BadInput", input.status());
  auto target = options_.targets.find(input->target());
  if (target == options_.targets.end() || target->second == nullptr) {
    return api::Payloads();  // Nothing of this target runs here.
  }
  RETURN_IF_ERROR(target->second->StopSlot(input->project_id(), input->slot()));
  ctx.log().Info("platform.slot_stopped", LogField("project", input->project_id()),
                 LogField("slot", input->slot()));
  return api::Payloads();
}

}  // namespace kiln::worker
