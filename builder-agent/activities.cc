#include "builder-agent/activities.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "sdk/log_writer.h"

namespace kiln::builder {
namespace {

// Activities run from milliseconds to the better part of an hour (a cold build).
prometheus::Histogram::BucketBoundaries StepBuckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

sdk::api::Payloads Progress(const pb::BuildProgress& progress) { return sdk::ToPayloads(progress); }

}  // namespace

struct BuilderActivities::Metrics {
  explicit Metrics(prometheus::Registry& registry)
      : step_duration(prometheus::BuildHistogram()
                          .Name("kiln_builder_step_duration_seconds")
                          .Help("Time a build step took, by step and outcome")
                          .Register(registry)),
        layers(prometheus::BuildCounter()
                   .Name("kiln_builder_build_steps_total")
                   .Help("Build steps run, by whether the layer cache served them")
                   .Register(registry)),
        blobs(prometheus::BuildCounter()
                  .Name("kiln_builder_push_blobs_total")
                  .Help("Blobs of pushed images, by whether the registry had them already")
                  .Register(registry)),
        bytes_pushed(prometheus::BuildCounter()
                         .Name("kiln_builder_pushed_bytes_total")
                         .Help("Bytes uploaded to the registry")
                         .Register(registry)
                         .Add({})),
        bytes_fetched(prometheus::BuildCounter()
                          .Name("kiln_builder_fetched_bytes_total")
                          .Help("Bytes received by git fetches")
                          .Register(registry)
                          .Add({})) {}

  void Step(const std::string& step, absl::Duration d, bool ok) {
    step_duration.Add({{"step", step}, {"outcome", ok ? "ok" : "error"}}, StepBuckets())
        .Observe(absl::ToDoubleSeconds(d));
  }

  prometheus::Family<prometheus::Histogram>& step_duration;
  prometheus::Family<prometheus::Counter>& layers;
  prometheus::Family<prometheus::Counter>& blobs;
  prometheus::Counter& bytes_pushed;
  prometheus::Counter& bytes_fetched;
};

// One activity's view of the run's "build" log stream: lines with secrets redacted, and
// heartbeats at least every kTick (carrying the latest progress) while the step runs, so
// that a cancel is heard even when the step prints nothing. Log writes are best effort: a
// build does not fail because its log could not be written (a warning says so).
class BuilderActivities::StepLog {
 public:
  static constexpr size_t kMaxProgressLine = 200;
  static constexpr absl::Duration kTick = absl::Milliseconds(200);
  // Bounds how long a log write can hold up a step while the orchestrator is away.
  static constexpr absl::Duration kLogRetryTimeout = absl::Seconds(10);

  StepLog(BuilderActivities& owner, sdk::ActivityContext& ctx, std::string step)
      : owner_(owner),
        ctx_(ctx),
        writer_(owner.agent_.connection(), Run(ctx), kBuildLogStream,
                {.ns = owner.agent_.options().ns,
                 .max_delay = kTick,
                 .retry_timeout = kLogRetryTimeout}) {
    progress_.set_step(std::move(step));
    ctx_.Heartbeat(Progress(progress_));
    ticker_ = std::thread([this] {
      while (!stop_.WaitForNotificationWithTimeout(kTick)) {
        pb::BuildProgress copy;
        {
          absl::MutexLock lock(&mu_);
          copy = progress_;
        }
        ctx_.Heartbeat(Progress(copy));
        // Output that paused is sent now rather than with the next line.
        Flush();
      }
    });
  }
  ~StepLog() {
    stop_.Notify();
    ticker_.join();
    Flush();
  }

  // One line of output (without its newline).
  void Line(std::string_view line) {
    std::string redacted = owner_.options_.secrets.Redact(line);
    {
      absl::MutexLock lock(&mu_);
      progress_.set_last_line(redacted.substr(0, kMaxProgressLine));
    }
    absl::MutexLock lock(&writer_mu_);
    if (failed_) return;
    absl::Status appended = writer_.Append(absl::StrCat(redacted, "\n"));
    if (!appended.ok()) Failed(appended);
  }
  void Update(const std::function<void(pb::BuildProgress&)>& update) {
    absl::MutexLock lock(&mu_);
    update(progress_);
  }
  void Flush() {
    absl::MutexLock lock(&writer_mu_);
    if (failed_ || writer_.buffered() == 0) return;
    absl::Status flushed = writer_.Flush();
    if (!flushed.ok()) Failed(flushed);
  }

 private:
  static sdk::api::WorkflowExecution Run(const sdk::ActivityContext& ctx) {
    sdk::api::WorkflowExecution run;
    run.set_workflow_id(ctx.info().workflow_id);
    run.set_run_id(ctx.info().run_id);
    return run;
  }
  void Failed(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
    failed_ = true;
    ctx_.log().Warn("builder.log_write_failed",
                    LogField("error", owner_.options_.secrets.Redact(status.ToString())));
  }

  BuilderActivities& owner_;
  sdk::ActivityContext& ctx_;
  absl::Mutex writer_mu_;
  sdk::LogWriter writer_ ABSL_GUARDED_BY(writer_mu_);
  bool failed_ ABSL_GUARDED_BY(writer_mu_) = false;
  absl::Mutex mu_;
  pb::BuildProgress progress_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread ticker_;
};

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
  return absl::OkStatus();
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
  if (!input.token_secret().empty()) {
    auto token = options_.secrets.Get(input.token_secret());
    if (!token.ok()) {
      return sdk::ApplicationError("SecretNotConfigured", std::string(token.status().message()),
                                   /*non_retryable=*/true);
    }
    request.token = *std::move(token);
  }
  StepLog log(*this, ctx, "fetch");
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
  log.Line(absl::StrCat("[fetch] ", fetched->commit_sha, " (",
                        fetched->mirror_created ? "cold: new mirror, " : "",
                        fetched->received_objects, " objects, ", fetched->received_bytes,
                        " bytes, fetch ", absl::FormatDuration(fetched->fetch_duration),
                        ", checkout ", absl::FormatDuration(fetched->checkout_duration),
                        ", files written ", fetched->files_written, ")"));
  return result;
}

}  // namespace kiln::builder
