// The engine's limits. Every one is checked where data enters, and exceeding it is a clear
// error naming the limit (kInvalidArgument for a bad request, kResourceExhausted for a full
// resource), never a silent truncation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace kiln::orchestrator::limits {

// Ids and names.
inline constexpr size_t kMaxIdLength = 1000;    // workflow id, activity id, timer id, request id
inline constexpr size_t kMaxNameLength = 1000;  // namespace, types, task queue names

// Payloads: one input, result, heartbeat or failure detail blob.
inline constexpr size_t kMaxPayloadBytes = 2 << 20;  // 2 MiB
inline constexpr size_t kMaxFailureMessageBytes = 32 << 10;
// A failure as a whole (message, stack trace, causes, details).
inline constexpr size_t kMaxFailureBytes = kMaxPayloadBytes;
// A start's memo and a start's or signal's header: each key and value counted. The memo is
// returned in every list answer, so it stays small.
inline constexpr size_t kMaxMemoBytes = 32 << 10;
inline constexpr size_t kMaxHeaderBytes = 32 << 10;
// A cancel's or terminate's reason, a query task's error message.
inline constexpr size_t kMaxReasonBytes = 32 << 10;
// A visibility query (List, Count).
inline constexpr size_t kMaxQueryLength = 16 << 10;
// Retry policies.
inline constexpr double kMaxRetryBackoffCoefficient = 1'000;
inline constexpr size_t kMaxNonRetryableErrorTypes = 100;

// History: a run that reaches either limit is terminated with a reason saying which.
inline constexpr int64_t kMaxHistoryEvents = 51'200;
inline constexpr int64_t kMaxHistoryBytes = 50 << 20;

// Pending work per run.
inline constexpr size_t kMaxPendingActivities = 2'000;
inline constexpr size_t kMaxPendingTimers = 10'000;
// Signals one run may receive (a workflow that takes more continues as new first).
inline constexpr int64_t kMaxSignalsPerRun = 10'000;
inline constexpr size_t kMaxBufferedEvents = 10'000;
inline constexpr size_t kMaxCommandsPerTask = 10'000;
// Behaviour flags of each kind an SDK may record on one workflow task (sdk_metadata).
inline constexpr size_t kMaxSdkFlags = 256;
// Activities one workflow task completion may start eagerly for its worker (the rest are
// scheduled as usual).
inline constexpr size_t kMaxEagerActivitiesPerTask = 16;
// A speculative workflow task's started time (the worker's clock, the workflow's Now()) may be
// this far ahead of the engine's clock: workers on other machines.
inline constexpr absl::Duration kMaxSpeculativeClockSkew = absl::Seconds(1);

// Reads.
inline constexpr int32_t kDefaultHistoryPageSize = 1'000;
inline constexpr int32_t kMaxHistoryPageSize = 10'000;
// List's page sizes and scan bound are visibility's (visibility/visibility_list.h).

// Long polls.
inline constexpr absl::Duration kDefaultLongPoll = absl::Seconds(60);
// A poll answers this long before the caller's own deadline, so the empty answer arrives.
inline constexpr absl::Duration kLongPollMargin = absl::Seconds(1);

// Defaults.
inline constexpr absl::Duration kDefaultWorkflowTaskTimeout = absl::Seconds(10);
inline constexpr absl::Duration kMaxWorkflowTaskTimeout = absl::Minutes(2);

// A workflow task that keeps failing (a worker that does not know the workflow type, code that
// throws on replay) is retried at once the first time, then after a backoff from the third
// attempt on: 1 s, doubling, at most 10 minutes. Without it a failing task loops as fast as a
// worker answers, and its history grows by three events each time.
inline constexpr int32_t kWorkflowTaskBackoffFromAttempt = 3;
inline constexpr absl::Duration kWorkflowTaskRetryInitialBackoff = absl::Seconds(1);
inline constexpr absl::Duration kWorkflowTaskRetryMaxBackoff = absl::Minutes(10);
inline absl::Duration WorkflowTaskRetryBackoff(int32_t attempt) {
  if (attempt < kWorkflowTaskBackoffFromAttempt) return absl::ZeroDuration();
  absl::Duration backoff = kWorkflowTaskRetryInitialBackoff;
  for (int32_t i = kWorkflowTaskBackoffFromAttempt; i < attempt; ++i) {
    backoff *= 2;
    if (backoff >= kWorkflowTaskRetryMaxBackoff) return kWorkflowTaskRetryMaxBackoff;
  }
  return backoff;
}

inline constexpr absl::Duration kDefaultRetryInitialInterval = absl::Seconds(1);
inline constexpr double kDefaultRetryBackoffCoefficient = 2.0;
inline constexpr int kDefaultRetryMaximumIntervalFactor = 100;

}  // namespace kiln::orchestrator::limits
