// Tokens that verified, kept so that a caller sending the same bearer token on every call (every
// worker, agent and client does) pays for its signature check and parsing once, not per call.
//
// Keyed by the token's exact bytes: a hit is the very token that verified, so its claims are the
// same. What changes with time is checked again on every hit, as Verify checks it (expired,
// issued too far in the future); failures are never cached, so a bad token costs a full Verify
// each time. Revocation is not this cache's business: its user checks the claims' id against
// its revocations after every lookup, hit or miss, so a revoked token is refused from the next
// call on. Bounded (the least recently used goes first); one mutex, held for a hash lookup and a
// list splice.
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/token.h"

namespace kiln::auth {

namespace token_limits {
// Distinct verified tokens remembered (each about the token's size plus its claims).
inline constexpr size_t kVerifiedTokenCacheEntries = 1024;
}  // namespace token_limits

class VerifiedTokenCache {
 public:
  explicit VerifiedTokenCache(size_t capacity = token_limits::kVerifiedTokenCacheEntries);

  // `key.Verify(token, now)`, answered from the cache when `token` verified before with `key`
  // and is still within its lifetime at `now`; the same errors as Verify. One cache serves one
  // key.
  absl::StatusOr<Claims> Verify(const TokenKey& key, std::string_view token, absl::Time now);

  size_t size() const;

 private:
  struct Entry {
    std::string token;
    Claims claims;
  };

  const size_t capacity_;
  mutable absl::Mutex mu_;
  // Most recently used first. The index's keys view the entries' tokens (list nodes stay put).
  std::list<Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<absl::string_view, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::auth
