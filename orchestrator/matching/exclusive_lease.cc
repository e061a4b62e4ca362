#include "orchestrator/matching/exclusive_lease.h"

#include <algorithm>
#include <utility>

namespace kiln::orchestrator::matching_internal {

absl::Time ExclusiveLease::Expiry(absl::Time now) const {
  if (!Live(now)) return absl::InfinitePast();
  // A waiting poll keeps the lease alive until it ends, which is now at the earliest.
  return waiting_ > 0 ? std::max(expiry_, now + duration_) : expiry_;
}

void ExclusiveLease::Take(std::string identity, size_t waiting, absl::Time now) {
  holder_ = std::move(identity);
  waiting_ = waiting;
  expiry_ = now + duration_;
}

void ExclusiveLease::Renew(std::string_view identity, absl::Time now) {
  ForgetIfLapsed(now);
  if (!IsHolder(identity)) return;
  // max: a clock stepping back must not shorten a lease already granted.
  expiry_ = std::max(expiry_, now + duration_);
}

void ExclusiveLease::PollStarted(std::string_view identity, absl::Time now) {
  ForgetIfLapsed(now);
  if (!IsHolder(identity)) return;
  ++waiting_;
  expiry_ = std::max(expiry_, now + duration_);
}

void ExclusiveLease::PollEnded(std::string_view identity, absl::Time now) {
  ForgetIfLapsed(now);
  if (!IsHolder(identity)) return;
  // Never zero here (Take counts the holder's polls already waiting); a guard against wrapping.
  if (waiting_ > 0) --waiting_;
  expiry_ = std::max(expiry_, now + duration_);
}

void ExclusiveLease::ForgetIfLapsed(absl::Time now) {
  if (holder_.empty() || Live(now)) return;
  holder_.clear();
  waiting_ = 0;
  expiry_ = absl::InfinitePast();
}

}  // namespace kiln::orchestrator::matching_internal
