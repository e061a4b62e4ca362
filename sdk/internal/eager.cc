#include "sdk/internal/eager.h"

#include <utility>

namespace kiln::sdk {

void LocalRun::Hold() {
  absl::MutexLock lock(&mu_);
  ++holds_;
}

void LocalRun::Release() {
  absl::MutexLock lock(&mu_);
  if (--holds_ == 0 && !close_event_.has_value()) left_ = true;
}

void LocalRun::Closed(api::HistoryEvent close_event) {
  absl::MutexLock lock(&mu_);
  if (!left_ && !close_event_.has_value()) close_event_ = std::move(close_event);
}

std::optional<api::HistoryEvent> LocalRun::Wait(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return left_ || close_event_.has_value();
  };
  mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
  return close_event_;
}

bool LocalRun::settled() {
  absl::MutexLock lock(&mu_);
  return left_ || close_event_.has_value();
}

}  // namespace kiln::sdk
