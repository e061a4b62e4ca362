// What one step of a builder activity says while it runs: its public output, line by line
// with secrets redacted, to the run's log stream "build" (sdk::LogWriter; sent by a thread of
// its own as soon as a line is there, at most once every kMinSendGap so a chatty build sends
// batches, not a call per line; a slow log never holds up the step), and a heartbeat at
// least every kTick carrying its latest progress (BuildProgress), so that a cancel requested
// by the workflow is heard even while the step prints nothing (a RUN that sleeps). Log writes
// are best effort: a build does not fail because its log could not be written (a warning in
// the agent's own log says so).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "builder-agent/secrets.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/activity.h"
#include "sdk/connection.h"
#include "sdk/log_writer.h"

namespace kiln::builder {

inline constexpr char kBuildLogStream[] = "build";

class StepLog {
 public:
  static constexpr absl::Duration kTick = absl::Milliseconds(200);
  // A line waits at most this long after the previous send (a follower sees it that soon).
  static constexpr absl::Duration kMinSendGap = absl::Milliseconds(20);
  // Bounds how long a log write can hold up a step while the orchestrator is away.
  static constexpr absl::Duration kLogRetryTimeout = absl::Seconds(10);
  static constexpr size_t kMaxProgressLine = 200;
  // Output waiting for the next send; past it lines are dropped (and counted in the log).
  static constexpr size_t kMaxPendingBytes = 8 << 20;

  StepLog(sdk::Connection& connection, const std::string& ns, const SecretStore& secrets,
          sdk::ActivityContext& ctx, std::string step);
  // Stops heartbeating and sends what is left of the output.
  ~StepLog();
  StepLog(const StepLog&) = delete;
  StepLog& operator=(const StepLog&) = delete;

  // One line of public output (without its newline); thread-safe, never blocks on the network.
  void Line(std::string_view line);
  void Update(const std::function<void(kiln::platform::v1::BuildProgress&)>& update);
  // Sends the output so far (the ticker does when a line is there).
  void Flush();

 private:
  const SecretStore& secrets_;
  sdk::ActivityContext& ctx_;
  absl::Mutex writer_mu_;
  sdk::LogWriter writer_ ABSL_GUARDED_BY(writer_mu_);
  bool failed_ ABSL_GUARDED_BY(writer_mu_) = false;
  absl::Mutex mu_;
  kiln::platform::v1::BuildProgress progress_ ABSL_GUARDED_BY(mu_);
  std::string pending_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_lines_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
};

}  // namespace kiln::builder
