#include "orchestrator/history/retry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "orchestrator/history/limits.h"

namespace kiln::orchestrator {

using kiln::api::v1::RetryPolicy;

absl::Status NormalizeRetryPolicy(RetryPolicy* policy) {
  absl::Duration initial = FromProto(policy->initial_interval());
  absl::Duration maximum = FromProto(policy->maximum_interval());
  if (initial < absl::ZeroDuration() || maximum < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("retry_policy: intervals must not be negative");
  }
  if (policy->maximum_attempts() < 0) {
    return absl::InvalidArgumentError("retry_policy: maximum_attempts must not be negative");
  }
  // NaN compares false with everything: it must be refused by name, not slip through.
  const double coefficient = policy->backoff_coefficient();
  if (!std::isfinite(coefficient) || (coefficient != 0 && coefficient < 1) ||
      coefficient > limits::kMaxRetryBackoffCoefficient) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry_policy: backoff_coefficient must be between 1 and ",
                     limits::kMaxRetryBackoffCoefficient, " (0: the default)"));
  }
  if (static_cast<size_t>(policy->non_retryable_error_types_size()) >
      limits::kMaxNonRetryableErrorTypes) {
    return absl::InvalidArgumentError(absl::StrCat("retry_policy: more than ",
                                                   limits::kMaxNonRetryableErrorTypes,
                                                   " non_retryable_error_types"));
  }
  for (const std::string& type : policy->non_retryable_error_types()) {
    if (type.size() > limits::kMaxNameLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("retry_policy: a non_retryable_error_types entry of ", type.size(),
                       " bytes is over the limit of ", limits::kMaxNameLength));
    }
  }
  if (initial == absl::ZeroDuration()) initial = limits::kDefaultRetryInitialInterval;
  if (policy->backoff_coefficient() == 0) {
    policy->set_backoff_coefficient(limits::kDefaultRetryBackoffCoefficient);
  }
  if (maximum == absl::ZeroDuration())
    maximum = initial * limits::kDefaultRetryMaximumIntervalFactor;
  if (maximum < initial) {
    return absl::InvalidArgumentError("retry_policy: maximum_interval is below initial_interval");
  }
  ToProto(initial, policy->mutable_initial_interval());
  ToProto(maximum, policy->mutable_maximum_interval());
  return absl::OkStatus();
}

RetryDecision DecideRetry(const RetryPolicy& policy, int attempt,
                          const kiln::api::v1::Failure& failure, absl::Time now,
                          absl::Time expiration) {
  RetryDecision decision;
  if (failure.has_application_failure_info()) {
    const auto& info = failure.application_failure_info();
    bool listed = std::find(policy.non_retryable_error_types().begin(),
                            policy.non_retryable_error_types().end(),
                            info.type()) != policy.non_retryable_error_types().end();
    if (info.non_retryable() || listed) {
      decision.state = kiln::api::v1::RETRY_STATE_NON_RETRYABLE_FAILURE;
      return decision;
    }
  }
  if (failure.has_canceled_failure_info()) {
    decision.state = kiln::api::v1::RETRY_STATE_CANCEL_REQUESTED;
    return decision;
  }
  if (policy.maximum_attempts() > 0 && attempt >= policy.maximum_attempts()) {
    decision.state = kiln::api::v1::RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED;
    return decision;
  }
  absl::Duration initial = FromProto(policy.initial_interval());
  absl::Duration maximum = FromProto(policy.maximum_interval());
  double factor = std::pow(policy.backoff_coefficient(), std::max(0, attempt - 1));
  absl::Duration backoff = maximum;
  // Compare in seconds first so a huge factor cannot overflow the multiplication.
  if (absl::ToDoubleSeconds(initial) * factor < absl::ToDoubleSeconds(maximum)) {
    backoff = absl::Seconds(absl::ToDoubleSeconds(initial) * factor);
  }
  if (now + backoff >= expiration) {
    decision.state = kiln::api::v1::RETRY_STATE_TIMEOUT;
    return decision;
  }
  decision.state = kiln::api::v1::RETRY_STATE_IN_PROGRESS;
  decision.backoff = backoff;
  return decision;
}

}  // namespace kiln::orchestrator
