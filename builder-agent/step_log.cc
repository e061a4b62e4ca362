#include "builder-agent/step_log.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "sdk/converter.h"

namespace kiln::builder {
namespace {

sdk::api::WorkflowExecution RunOf(const sdk::ActivityContext& ctx) {
  sdk::api::WorkflowExecution run;
  run.set_workflow_id(ctx.info().workflow_id);
  run.set_run_id(ctx.info().run_id);
  return run;
}

}  // namespace

StepLog::StepLog(sdk::Connection& connection, const std::string& ns, const SecretStore& secrets,
                 sdk::ActivityContext& ctx, std::string step)
    : secrets_(secrets),
      ctx_(ctx),
      writer_(connection, RunOf(ctx), kBuildLogStream,
              {.ns = ns, .max_delay = kTick, .retry_timeout = kLogRetryTimeout}) {
  progress_.set_step(std::move(step));
  ctx_.Heartbeat(sdk::ToPayloads(progress_));
  ticker_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(kTick)) {
      kiln::platform::v1::BuildProgress copy;
      {
        absl::MutexLock lock(&mu_);
        copy = progress_;
      }
      ctx_.Heartbeat(sdk::ToPayloads(copy));
      // Output that paused goes out now rather than with the next line.
      Flush();
    }
  });
}

StepLog::~StepLog() {
  stop_.Notify();
  ticker_.join();
  Flush();
}

void StepLog::Line(std::string_view line) {
  std::string redacted = secrets_.Redact(line);
  {
    absl::MutexLock lock(&mu_);
    progress_.set_last_line(redacted.substr(0, kMaxProgressLine));
  }
  absl::MutexLock lock(&writer_mu_);
  if (failed_) return;
  absl::Status appended = writer_.Append(absl::StrCat(redacted, "\n"));
  if (!appended.ok()) {
    failed_ = true;
    ctx_.log().Warn("builder.log_write_failed",
                    LogField("error", secrets_.Redact(appended.ToString())));
  }
}

void StepLog::Update(const std::function<void(kiln::platform::v1::BuildProgress&)>& update) {
  absl::MutexLock lock(&mu_);
  update(progress_);
}

void StepLog::Flush() {
  absl::MutexLock lock(&writer_mu_);
  if (failed_ || writer_.buffered() == 0) return;
  absl::Status flushed = writer_.Flush();
  if (!flushed.ok()) {
    failed_ = true;
    ctx_.log().Warn("builder.log_write_failed",
                    LogField("error", secrets_.Redact(flushed.ToString())));
  }
}

}  // namespace kiln::builder
