// The builder agent's podman activities: BuildImage, RunInImage (a private step), PushImage
// and Housekeeping. See activities.h.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "builder-agent/activities.h"
#include "builder-agent/builder_metrics.h"
#include "builder-agent/step_log.h"
#include "common/proto_time.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

constexpr absl::Duration kDefaultRunTimeout = absl::Minutes(10);
constexpr absl::Duration kMaxRunTimeout = absl::Hours(2);
constexpr size_t kMaxCommandArgs = 256;

// Errors of a podman step a retry cannot cure: the build itself failed (a Containerfile
// error, a RUN that exits non-zero), or the request was bad. The others (podman or the
// registry unavailable, a timeout) may pass.
bool IsRetryablePodmanError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

// Whether `path` is inside `dir` (both made canonical).
bool IsUnder(const std::string& path, const std::string& dir) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(path, ec);
  if (ec) return false;
  auto d = std::filesystem::weakly_canonical(dir, ec);
  if (ec) return false;
  auto [end, _] = std::mismatch(d.begin(), d.end(), p.begin(), p.end());
  return end == d.end();
}

}  // namespace

absl::StatusOr<pb::BuildImageResult> BuilderActivities::BuildImage(
    sdk::ActivityContext& ctx, const pb::BuildImageInput& input) {
  RETURN_IF_ERROR(CheckProject(input.project_id()));
  if (input.context_dir().empty() || !IsUnder(input.context_dir(), agent_.options().volume)) {
    return sdk::ApplicationError(
        "InvalidInput",
        absl::StrCat("the build context '", input.context_dir(),
                     "' must be a work tree on this agent's volume (FetchSource's worktree_dir)"),
        /*non_retryable=*/true);
  }
  if (!input.network().empty() && input.network() != "none" && input.network() != "host") {
    return sdk::ApplicationError(
        "InvalidInput",
        absl::StrCat("network must be \"none\" or \"host\", got \"", input.network(), "\""),
        /*non_retryable=*/true);
  }
  StepLog log(agent_.connection(), agent_.options().ns, options_.secrets, ctx, "build");
  auto line = [&](std::string_view l) {
    log.Line(l);
    if (l.starts_with("STEP ")) {
      log.Update([](pb::BuildProgress& p) { p.set_layers_done(p.layers_done() + 1); });
    } else if (l.find("Using cache") != std::string_view::npos) {
      log.Update([](pb::BuildProgress& p) { p.set_layers_cached(p.layers_cached() + 1); });
    }
  };
  ASSIGN_OR_RETURN(Podman * podman, GetPodman(line));
  BuildRequest request;
  request.context_dir = input.context_dir();
  request.containerfile = input.containerfile();
  request.repository = LocalRepository();
  request.project = input.project_id();
  request.build_id = input.build_id();
  if (!input.network().empty()) request.network = input.network();
  // Base images may come from the agent's own registry (a plain-HTTP one on loopback).
  request.tls_verify = options_.registry_tls_verify;
  request.commit = input.commit_sha();
  for (const auto& [key, value] : input.build_args()) request.build_args.emplace_back(key, value);
  request.secrets = options_.secrets.Values();
  log.Line(absl::StrCat("[build] ", request.repository, ":", request.commit, " from ",
                        request.containerfile.empty() ? "Containerfile" : request.containerfile));
  absl::Time began = absl::Now();
  auto built = podman->Build(request, line, [&] { return ctx.cancelled(); });
  metrics_->Step("build", absl::Now() - began, built.ok());
  if (!built.ok()) {
    log.Line(absl::StrCat("[build] failed: ", options_.secrets.Redact(built.status().ToString())));
    return StepError(ctx, "BuildFailed", built.status(), IsRetryablePodmanError(built.status()));
  }
  metrics_->layers.Add({{"cache", "hit"}}).Increment(built->layers_reused);
  metrics_->layers.Add({{"cache", "miss"}})
      .Increment(std::max(0, built->layers_total - built->layers_reused));
  pb::BuildImageResult result;
  result.set_image_id(built->image_id);
  result.set_image_ref(built->tag);
  result.set_steps(built->layers_total);
  result.set_steps_cached(built->layers_reused);
  ToProto(built->duration, result.mutable_build_duration());
  log.Line(absl::StrCat("[build] ", built->tag, " ", built->image_id, " in ",
                        absl::FormatDuration(built->duration), " (", built->layers_reused, " of ",
                        built->layers_total, " layers from the cache)"));
  return result;
}

absl::StatusOr<pb::RunInImageResult> BuilderActivities::RunInImage(
    sdk::ActivityContext& ctx, const pb::RunInImageInput& input) {
  RETURN_IF_ERROR(CheckProject(input.project_id()));
  if (input.name().empty() || input.command().empty() ||
      static_cast<size_t>(input.command_size()) > kMaxCommandArgs || input.image_ref().empty()) {
    return sdk::ApplicationError(
        "InvalidInput",
        absl::StrCat("a private step needs a name, an image and a command of 1 to ",
                     kMaxCommandArgs, " arguments"),
        /*non_retryable=*/true);
  }
  absl::Duration timeout = input.has_timeout() ? FromProto(input.timeout()) : kDefaultRunTimeout;
  if (timeout <= absl::ZeroDuration() || timeout > kMaxRunTimeout) timeout = kDefaultRunTimeout;
  RunInImageRequest request;
  request.name = input.name();
  request.image = input.image_ref();
  request.argv.assign(input.command().begin(), input.command().end());
  request.timeout = timeout;
  for (const std::string& name : input.secret_names()) {
    auto value = options_.secrets.Get(name);
    if (!value.ok()) {
      return sdk::ApplicationError("SecretNotConfigured", std::string(value.status().message()),
                                   /*non_retryable=*/true);
    }
    // Through podman's environment, never its command line.
    request.env.emplace_back(name, *value);
  }
  request.secrets = options_.secrets.Values();

  StepLog log(agent_.connection(), agent_.options().ns, options_.secrets, ctx, "run");
  auto line = [&](std::string_view l) { log.Line(l); };
  ASSIGN_OR_RETURN(Podman * podman, GetPodman(line));
  // A private step's output never reaches the sink; only "[private step: NAME] ok" does.
  auto ran = podman->RunInImage(request, line, [&] { return ctx.cancelled(); });
  if (!ran.ok()) {
    // The runner has said "[private step: NAME] failed" or "cancelled" in the log already.
    metrics_->Step("run", absl::ZeroDuration(), false);
    return StepError(ctx, "PrivateStepFailed", ran.status(), IsRetryablePodmanError(ran.status()));
  }
  metrics_->Step("run", ran->duration, ran->exit_code == 0);
  pb::RunInImageResult result;
  result.set_ok(ran->exit_code == 0);
  result.set_exit_code(ran->exit_code);
  ToProto(ran->duration, result.mutable_duration());
  if (ran->exit_code != 0) {
    // The output stays on the machine: the failure says only which step and its exit code.
    return sdk::ApplicationError(
        "PrivateStepFailed",
        absl::StrCat("private step '", input.name(), "' exited with ", ran->exit_code),
        /*non_retryable=*/true);
  }
  return result;
}

absl::StatusOr<pb::PushImageResult> BuilderActivities::PushImage(sdk::ActivityContext& ctx,
                                                                 const pb::PushImageInput& input) {
  RETURN_IF_ERROR(CheckProject(input.project_id()));
  if (options_.registry.empty()) {
    return sdk::ApplicationError("NoRegistry", "this agent has no --registry to push to",
                                 /*non_retryable=*/true);
  }
  if (input.image_ref().empty()) {
    return sdk::ApplicationError("InvalidInput", "image_ref is empty", /*non_retryable=*/true);
  }
  std::string tag = input.tag();
  if (tag.empty()) {
    size_t colon = input.image_ref().rfind(':');
    tag = colon == std::string::npos ? "latest" : input.image_ref().substr(colon + 1);
  }
  const std::string repository =
      input.repository().empty() ? LocalRepository() : input.repository();
  PushRequest request;
  request.image = input.image_ref();
  request.destination = absl::StrCat(options_.registry, "/", repository, ":", tag);
  request.tls_verify = options_.registry_tls_verify;

  StepLog log(agent_.connection(), agent_.options().ns, options_.secrets, ctx, "push");
  auto line = [&](std::string_view l) { log.Line(l); };
  ASSIGN_OR_RETURN(Podman * podman, GetPodman(line));
  log.Line(absl::StrCat("[push] ", request.destination));
  absl::Time began = absl::Now();
  auto pushed = podman->Push(request, line, [&] { return ctx.cancelled(); });
  metrics_->Step("push", absl::Now() - began, pushed.ok());
  if (!pushed.ok()) {
    log.Line(absl::StrCat("[push] failed: ", options_.secrets.Redact(pushed.status().ToString())));
    // A registry that refuses or is away may be back for the next attempt.
    return StepError(ctx, "PushFailed", pushed.status(),
                     pushed.status().code() != absl::StatusCode::kInvalidArgument);
  }
  metrics_->blobs.Add({{"result", "pushed"}}).Increment(pushed->blobs_pushed);
  metrics_->blobs.Add({{"result", "reused"}}).Increment(pushed->blobs_reused);
  pb::PushImageResult result;
  result.set_digest(pushed->digest);
  result.set_reference(pushed->reference);
  result.set_blobs_pushed(pushed->blobs_pushed);
  result.set_blobs_reused(pushed->blobs_reused);
  if (pushed->bytes_pushed >= 0) {
    result.set_bytes_pushed(pushed->bytes_pushed);
    metrics_->bytes_pushed.Increment(static_cast<double>(pushed->bytes_pushed));
  }
  ToProto(pushed->duration, result.mutable_push_duration());
  log.Line(absl::StrCat(
      "[push] ", pushed->reference, " (", pushed->blobs_pushed, " layers uploaded",
      pushed->bytes_pushed >= 0 ? absl::StrCat(", ", pushed->bytes_pushed, " bytes")
                                : std::string(),
      ", ", pushed->blobs_reused, " already there) in ", absl::FormatDuration(pushed->duration)));
  return result;
}

absl::StatusOr<pb::HousekeepingResult> BuilderActivities::Housekeeping(
    sdk::ActivityContext& ctx, const pb::HousekeepingInput& input) {
  RETURN_IF_ERROR(CheckProject(input.project_id()));
  int keep_last = input.keep_last() > 0 ? input.keep_last() : options_.keep_last;
  if (keep_last > kMaxKeepLast) {
    return sdk::ApplicationError("InvalidInput",
                                 absl::StrCat("keep_last is at most ", kMaxKeepLast),
                                 /*non_retryable=*/true);
  }
  StepLog log(agent_.connection(), agent_.options().ns, options_.secrets, ctx, "housekeeping");
  auto line = [&](std::string_view l) { log.Line(l); };
  ASSIGN_OR_RETURN(Podman * podman, GetPodman(line));
  absl::Time began = absl::Now();
  auto kept = podman->Housekeep(input.project_id(), keep_last, line);
  absl::Duration took = absl::Now() - began;
  metrics_->Step("housekeeping", took, kept.ok());
  if (!kept.ok()) return StepError(ctx, "HousekeepingFailed", kept.status(), true);
  pb::HousekeepingResult result;
  result.set_images_removed(kept->images_removed);
  result.set_images_kept(kept->images_kept);
  result.set_storage_reset(kept->reset);
  result.set_volume_used(kept->volume_used);
  ToProto(took, result.mutable_duration());
  log.Line(
      absl::StrCat("[housekeeping] kept ", kept->images_kept, " images of ", input.project_id(),
                   ", removed ", kept->images_removed,
                   kept->reset ? "; the volume was over 75 % full: container storage reset" : "",
                   "; volume ", static_cast<int>(kept->volume_used * 100), " % used"));
  return result;
}

}  // namespace kiln::builder
