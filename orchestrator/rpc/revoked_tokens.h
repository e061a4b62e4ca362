// The bearer tokens an admin revoked (RevokeToken): the Authorizer refuses them with
// kUnauthenticated "token revoked" although their signature and expiry are fine.
//
// Each revocation is one record in the store (Table::kMeta, keys::RevokedToken), written synced
// before Revoke returns, so it survives a restart; all of them are held in memory too, so the
// check on every call is a hash lookup. A record is kept until the token's own expiry (after
// which Verify refuses the token anyway) and then dropped: at the next start, and by each later
// Revoke. The set is bounded (kMaxRevokedTokens unexpired): past that, revoke everything at
// once by replacing the signing key (auth.key).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

namespace limits {
// Unexpired revocations held at once (each about 100 bytes in memory and in the store).
inline constexpr size_t kMaxRevokedTokens = 100'000;
}  // namespace limits

class RevokedTokens {
 public:
  // Reads every revocation in `store` and deletes those whose token has expired (one batch; a
  // store that cannot write keeps them until later). kDataLoss for a corrupt record.
  static absl::StatusOr<std::unique_ptr<RevokedTokens>> Load(Store* store, Clock* clock);

  // Whether the token with id `id` is revoked. Cheap; any thread.
  bool Contains(const std::string& id) const;

  // Records, synced, that the token `id` is refused until `expiry`, and drops the records of
  // tokens expired since. Returns whether it was revoked already (then nothing changes).
  // kResourceExhausted when kMaxRevokedTokens unexpired revocations exist; the store's error
  // when it cannot write. Blocks on the store: call it on the executor.
  absl::StatusOr<bool> Revoke(const std::string& id, absl::Time expiry);

  size_t size() const;

 private:
  RevokedTokens(Store* store, Clock* clock) : store_(store), clock_(clock) {}

  Store* const store_;
  Clock* const clock_;
  // Orders revocations so the store and the map change in the same order; held across the
  // commit, which mu_ is not (calls check Contains meanwhile).
  absl::Mutex write_mu_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> expiry_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::orchestrator
