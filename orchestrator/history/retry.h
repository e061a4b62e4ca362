// Activity retry policy: Temporal's defaults and the decision whether and when to retry.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kiln/api/v1/common.pb.h"
#include "kiln/api/v1/failure.pb.h"

namespace kiln::orchestrator {

// Fills unset fields with Temporal's defaults (1 s initial, ×2, max 100 × initial, unlimited
// attempts). Fails for negative intervals or a coefficient below 1.
absl::Status NormalizeRetryPolicy(kiln::api::v1::RetryPolicy* policy);

struct RetryDecision {
  kiln::api::v1::RetryState state = kiln::api::v1::RETRY_STATE_UNSPECIFIED;
  // Meaningful when state is RETRY_STATE_IN_PROGRESS.
  absl::Duration backoff;
};

// Decides whether attempt `attempt` (1-based), which just failed with `failure`, is retried.
// `expiration` is the schedule-to-close deadline (InfiniteFuture when none).
RetryDecision DecideRetry(const kiln::api::v1::RetryPolicy& policy, int attempt,
                          const kiln::api::v1::Failure& failure, absl::Time now,
                          absl::Time expiration);

}  // namespace kiln::orchestrator
