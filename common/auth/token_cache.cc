#include "common/auth/token_cache.h"

#include <utility>

namespace kiln::auth {
namespace {

// What Verify checks that depends on `now`, for a cached token, with Verify's reasons.
absl::Status CheckTimes(const Claims& claims, absl::Time now) {
  if (now >= claims.expiry) return absl::UnauthenticatedError("invalid token: token expired");
  if (claims.issued > now + token_limits::kMaxClockSkew) {
    return absl::UnauthenticatedError("invalid token: token issued in the future");
  }
  return absl::OkStatus();
}

}  // namespace

VerifiedTokenCache::VerifiedTokenCache(size_t capacity) : capacity_(capacity) {}

absl::StatusOr<Claims> VerifiedTokenCache::Verify(const TokenKey& key, std::string_view token,
                                                  absl::Time now) {
  const absl::string_view lookup(token.data(), token.size());
  {
    absl::MutexLock lock(&mu_);
    if (auto it = index_.find(lookup); it != index_.end()) {
      const std::list<Entry>::iterator entry = it->second;
      if (absl::Status times = CheckTimes(entry->claims, now); !times.ok()) {
        if (now >= entry->claims.expiry) {  // Expired for good: make room now.
          index_.erase(it);
          entries_.erase(entry);
        }
        return times;
      }
      entries_.splice(entries_.begin(), entries_, entry);
      return entry->claims;
    }
  }
  // Outside the lock: the HMAC and the parsing are what this cache saves.
  absl::StatusOr<Claims> claims = key.Verify(token, now);
  if (!claims.ok() || capacity_ == 0) return claims;
  absl::MutexLock lock(&mu_);
  if (index_.contains(lookup)) return claims;  // Another call verified it meanwhile.
  entries_.push_front(Entry{std::string(token), *claims});
  index_.emplace(absl::string_view(entries_.front().token), entries_.begin());
  if (entries_.size() > capacity_) {
    index_.erase(absl::string_view(entries_.back().token));
    entries_.pop_back();
  }
  return claims;
}

size_t VerifiedTokenCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace kiln::auth
