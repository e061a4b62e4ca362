// ExclusiveLease: which poller identity holds an exclusive task queue, and until when. A builder
// agent serves its project's queue alone: its exclusive poll takes the lease, and while the
// lease lives every other identity's poll on that queue is refused.
//
// The lease is live while its holder has a poll waiting, and for `duration` after the holder's
// last poll began or ended. It is in memory only: after a restart no queue is held, and the
// first exclusive poll takes it. Not thread-safe: Matching's mutex guards it with its TaskQueue.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace kiln::orchestrator::matching_internal {

class ExclusiveLease {
 public:
  explicit ExclusiveLease(absl::Duration duration) : duration_(duration) {}

  // The identity holding the lease at `now`; empty when none does.
  std::string Holder(absl::Time now) const { return Live(now) ? holder_ : std::string(); }
  // Another identity than `identity` holds the lease at `now`.
  bool HeldByOther(std::string_view identity, absl::Time now) const {
    return Live(now) && holder_ != identity;
  }
  // When the lease lapses if its holder stops polling now: InfinitePast when none is live.
  absl::Time Expiry(absl::Time now) const;

  // `identity` (not empty) takes the lease, which is not live; `waiting` of its polls are
  // waiting on the queue now.
  void Take(std::string identity, size_t waiting, absl::Time now);

  // A poll of `identity` arrived / started waiting / stopped waiting (answered, timed out,
  // cancelled or withdrawn). Each renews the lease if `identity` holds it; others' polls, and
  // polls while no lease is live, change nothing.
  void Renew(std::string_view identity, absl::Time now);
  void PollStarted(std::string_view identity, absl::Time now);
  void PollEnded(std::string_view identity, absl::Time now);

 private:
  bool Live(absl::Time now) const { return !holder_.empty() && (waiting_ > 0 || now < expiry_); }
  bool IsHolder(std::string_view identity) const { return !holder_.empty() && holder_ == identity; }
  // Forgets a lapsed lease, so that its former holder's later polls do not count for it: a
  // lease is only ever revived by Take.
  void ForgetIfLapsed(absl::Time now);

  const absl::Duration duration_;
  std::string holder_;
  // The holder's polls waiting now (counted only while the lease is live).
  size_t waiting_ = 0;
  // `duration_` after the holder's last poll began or ended.
  absl::Time expiry_ = absl::InfinitePast();
};

}  // namespace kiln::orchestrator::matching_internal
