#include "builder-agent/activities.h"

#include <atomic>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "builder-agent/builder_metrics.h"
#include "builder-agent/step_log.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/status.h"

namespace kiln::builder {
BuilderActivities::BuilderActivities(Agent& agent, ActivitiesOptions options)
    : agent_(agent), options_(std::move(options)) {}

BuilderActivities::~BuilderActivities() = default;

absl::StatusOr<std::unique_ptr<BuilderActivities>> BuilderActivities::Create(
    Agent& agent, ActivitiesOptions options) {
  if (options.keep_last < 1) {
    return absl::InvalidArgumentError("keep_last must be at least 1");
  }
  auto activities =
      std::unique_ptr<BuilderActivities>(new BuilderActivities(agent, std::move(options)));
  ASSIGN_OR_RETURN(activities->sources_, SourceCache::Create(agent.options().volume + "/git"));
  activities->metrics_ = std::make_unique<Metrics>(agent.registry());
  return activities;
}

absl::Status BuilderActivities::Register(sdk::ActivityWorker& worker) {
  RETURN_IF_ERROR(
      worker.Register(kFetchSourceActivity,
                      sdk::TypedActivity<pb::FetchSourceInput>(
                          [this](sdk::ActivityContext& ctx, const pb::FetchSourceInput& input) {
                            return FetchSource(ctx, input);
                          })));
  RETURN_IF_ERROR(worker.Register(
      kBuildImageActivity, sdk::TypedActivity<pb::BuildImageInput>(
                               [this](sdk::ActivityContext& ctx, const pb::BuildImageInput& in) {
                                 return BuildImage(ctx, in);
                               })));
  RETURN_IF_ERROR(worker.Register(
      kRunInImageActivity, sdk::TypedActivity<pb::RunInImageInput>(
                               [this](sdk::ActivityContext& ctx, const pb::RunInImageInput& in) {
                                 return RunInImage(ctx, in);
                               })));
  RETURN_IF_ERROR(worker.Register(
      kPushImageActivity, sdk::TypedActivity<pb::PushImageInput>(
                              [this](sdk::ActivityContext& ctx, const pb::PushImageInput& in) {
                                return PushImage(ctx, in);
                              })));
  RETURN_IF_ERROR(
      worker.Register(kHousekeepingActivity,
                      sdk::TypedActivity<pb::HousekeepingInput>(
                          [this](sdk::ActivityContext& ctx, const pb::HousekeepingInput& in) {
                            return Housekeeping(ctx, in);
                          })));
  return absl::OkStatus();
}

std::string BuilderActivities::LocalRepository() const {
  return "kiln/" + absl::AsciiStrToLower(agent_.options().project);
}

absl::StatusOr<Podman*> BuilderActivities::GetPodman(const LineSink& sink) {
  absl::MutexLock lock(&podman_mu_);
  if (podman_ == nullptr) {
    auto created = Podman::Create({.volume = agent_.options().volume}, sink);
    if (!created.ok()) {
      // Retrying on this machine would find the same podman.
      return sdk::ApplicationError("PodmanUnavailable", std::string(created.status().message()),
                                   /*non_retryable=*/true);
    }
    podman_ = *std::move(created);
  }
  return podman_.get();
}

absl::Status BuilderActivities::CheckProject(const std::string& project_id) const {
  if (project_id == agent_.options().project) return absl::OkStatus();
  return sdk::ApplicationError("WrongProject",
                               absl::StrCat("this agent builds project '", agent_.options().project,
                                            "', not '", project_id, "'"),
                               /*non_retryable=*/true);
}

absl::Status BuilderActivities::StepError(sdk::ActivityContext& ctx, const std::string& type,
                                          const absl::Status& status, bool retryable) const {
  if (ctx.cancelled() && (absl::IsCancelled(status) || sdk::IsCanceledError(status))) {
    return sdk::CanceledError(absl::StrCat(type, ": canceled"));
  }
  return sdk::ApplicationError(type, options_.secrets.Redact(status.ToString()), !retryable);
}

absl::StatusOr<pb::FetchSourceResult> BuilderActivities::FetchSource(
    sdk::ActivityContext& ctx, const pb::FetchSourceInput& input) {
  RETURN_IF_ERROR(CheckProject(input.project_id()));
  GitFetchRequest request;
  request.repository_url = input.repository_url();
  request.revision = input.revision();
  // The build's content, for skipping a build of content built before: the context's tree and
  // its Containerfile (the default name, or Dockerfile when only that exists, as BuildImage).
  const std::string context(absl::StripSuffix(input.context(), "/"));
  auto in_context = [&](const std::string& name) {
    return context.empty() ? name : absl::StrCat(context, "/", name);
  };
  request.object_paths = {context};
  if (input.containerfile().empty()) {
    request.object_paths.push_back(in_context("Containerfile"));
    request.object_paths.push_back(in_context("Dockerfile"));
  } else {
    request.object_paths.push_back(in_context(input.containerfile()));
  }
  if (!input.token_secret().empty()) {
    auto token = options_.secrets.Get(input.token_secret());
    if (!token.ok()) {
      return sdk::ApplicationError("SecretNotConfigured", std::string(token.status().message()),
                                   /*non_retryable=*/true);
    }
    request.token = *std::move(token);
  }
  StepLog log(agent_.connection(), agent_.options().ns, options_.secrets, ctx, "fetch");
  log.Line(absl::StrCat("[fetch] ", input.repository_url(), " ",
                        input.revision().empty() ? "HEAD" : input.revision()));
  absl::Time began = absl::Now();
  auto fetched = sources_->Fetch(
      request,
      [&](const GitFetchProgress& p) {
        log.Update([&](pb::BuildProgress& progress) { progress.set_bytes(p.received_bytes); });
      },
      [&] { return ctx.cancelled(); });
  absl::Duration took = absl::Now() - began;
  metrics_->Step("fetch", took, fetched.ok());
  if (!fetched.ok()) {
    log.Line(absl::StrCat("[fetch] failed: ", fetched.status().message()));
    return StepError(ctx, absl::IsNotFound(fetched.status()) ? "SourceNotFound" : "FetchFailed",
                     fetched.status(), IsRetryable(fetched.status()));
  }
  metrics_->bytes_fetched.Increment(static_cast<double>(fetched->received_bytes));
  pb::FetchSourceResult result;
  result.set_commit_sha(fetched->commit_sha);
  result.set_worktree_dir(fetched->worktree_dir);
  result.set_mirror_created(fetched->mirror_created);
  result.set_fetch_skipped(fetched->fetch_skipped);
  result.set_received_objects(fetched->received_objects);
  result.set_received_bytes(fetched->received_bytes);
  result.set_files_written(fetched->files_written);
  ToProto(fetched->fetch_duration, result.mutable_fetch_duration());
  ToProto(fetched->checkout_duration, result.mutable_checkout_duration());
  if (fetched->object_ids.size() == request.object_paths.size()) {
    result.set_tree_id(fetched->object_ids[0]);
    result.set_containerfile_id(fetched->object_ids[1].empty() && fetched->object_ids.size() > 2
                                    ? fetched->object_ids[2]
                                    : fetched->object_ids[1]);
  }
  log.Line(absl::StrCat("[fetch] ", fetched->commit_sha, " (",
                        fetched->mirror_created ? "cold: new mirror, " : "",
                        fetched->received_objects, " objects, ", fetched->received_bytes,
                        " bytes, fetch ", absl::FormatDuration(fetched->fetch_duration),
                        ", checkout ", absl::FormatDuration(fetched->checkout_duration),
                        ", files written ", fetched->files_written, ")"));
  return result;
}

}  // namespace kiln::builder
