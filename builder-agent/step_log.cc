#include "builder-agent/step_log.h"

#include <algorithm>

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
    absl::Time next_heartbeat = absl::Now() + kTick;
    absl::Time next_send = absl::Now();
    for (;;) {
      kiln::platform::v1::BuildProgress copy;
      bool heartbeat = false;
      {
        absl::MutexLock lock(&mu_);
        // Lines wait out the gap after the last send (they batch), then go at once.
        mu_.AwaitWithDeadline(absl::Condition(&stopping_), std::min(next_send, next_heartbeat));
        auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stopping_ || !pending_.empty() || dropped_lines_ > 0;
        };
        mu_.AwaitWithDeadline(absl::Condition(&ready), next_heartbeat);
        if (stopping_) return;
        if (absl::Now() >= next_heartbeat) {
          heartbeat = true;
          copy = progress_;
        }
      }
      if (heartbeat) {
        ctx_.Heartbeat(sdk::ToPayloads(copy));
        next_heartbeat = absl::Now() + kTick;
      }
      Flush();
      next_send = absl::Now() + kMinSendGap;
    }
  });
}

StepLog::~StepLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  ticker_.join();
  Flush();
}

void StepLog::Line(std::string_view line) {
  std::string redacted = secrets_.Redact(line);
  absl::MutexLock lock(&mu_);
  progress_.set_last_line(redacted.substr(0, kMaxProgressLine));
  if (pending_.size() + redacted.size() + 1 > kMaxPendingBytes) {
    ++dropped_lines_;
    return;
  }
  absl::StrAppend(&pending_, redacted, "\n");
}

void StepLog::Update(const std::function<void(kiln::platform::v1::BuildProgress&)>& update) {
  absl::MutexLock lock(&mu_);
  update(progress_);
}

void StepLog::Flush() {
  // One flusher at a time (the ticker, then the destructor), so lines keep their order.
  absl::MutexLock writer_lock(&writer_mu_);
  std::string data;
  {
    absl::MutexLock lock(&mu_);
    data.swap(pending_);
    if (dropped_lines_ > 0) {
      absl::StrAppend(&data, "[log: ", dropped_lines_,
                      " lines dropped while the log stream was not keeping up]\n");
      dropped_lines_ = 0;
    }
  }
  if (failed_ || (data.empty() && writer_.buffered() == 0)) return;
  absl::Status sent = writer_.Append(data);
  if (sent.ok()) sent = writer_.Flush();
  if (!sent.ok()) {
    failed_ = true;
    ctx_.log().Warn("builder.log_write_failed",
                    LogField("error", secrets_.Redact(sent.ToString())));
  }
}

}  // namespace kiln::builder
