// Signed, expiring bearer tokens: who a caller is (scope, project, subject) and until when.
//
// A token is `kiln1.<payload>.<signature>`, both parts base64url without padding; the payload
// is lines of `key=value` (v, scope, project, sub, id, iat, exp; times in Unix seconds) and the
// signature is HMAC-SHA256(key, "kiln1." + payload-as-sent). The key is 32 random bytes in a
// file of mode 0600 that the orchestrator and whoever mints tokens (kiln-worker, an operator)
// share. Tokens are not encrypted: a payload holds nothing secret.
//
// Invariants: a token that Verify accepts was minted with the same key, has not expired, names
// a known scope, and (only) an agent token names a project. Verify answers kUnauthenticated for
// anything wrong with a token, with a reason that never contains the token or any part of it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::auth {

// What a token allows (the orchestrator's Authorizer says what each scope may call).
enum class Scope { kAdmin, kWorker, kAgent, kReadOnly };

// Whether a worker token's `queues` cover `queue` (an exact entry, or a prefix entry "p*").
bool ServesQueue(const std::vector<std::string>& queues, std::string_view queue);

// "admin", "worker", "agent", "read-only".
std::string_view ScopeName(Scope scope);
// kInvalidArgument for any other name.
absl::StatusOr<Scope> ParseScope(std::string_view name);

struct Claims {
  Scope scope = Scope::kReadOnly;
  // The project an agent token serves (its queue is `project/<project>`); empty for the others.
  std::string project;
  // The task queues a worker token serves (only worker tokens name any): exact names, or a
  // prefix ending in '*' ("build-*"). A worker token with none may poll nothing.
  std::vector<std::string> queues;
  // Who the token was minted for (for logs), e.g. "kiln-worker" or "agent:myproj".
  std::string subject;
  // A unique id (for logs, and for revocation: the orchestrator's RevokeToken).
  std::string id;
  absl::Time issued = absl::UnixEpoch();
  absl::Time expiry = absl::UnixEpoch();
};

namespace token_limits {
// A token longer than this is refused before anything is decoded.
inline constexpr size_t kMaxTokenBytes = 2048;
// project, subject and id: at most this long, printable ASCII without spaces.
inline constexpr size_t kMaxFieldBytes = 256;
// The longest lifetime a token may have (Mint refuses more; Verify too).
inline constexpr absl::Duration kMaxLifetime = absl::Hours(24 * 366);
// How far in the future a token's issue time may be (clocks of minter and verifier differ).
inline constexpr absl::Duration kMaxClockSkew = absl::Minutes(5);
inline constexpr size_t kKeyBytes = 32;
}  // namespace token_limits

class TokenKey {
 public:
  // Reads the key at `path`: kFailedPrecondition when the file is readable or writable by
  // group or others, or is not exactly kKeyBytes long; kNotFound when it does not exist.
  static absl::StatusOr<TokenKey> Load(const std::string& path);
  // Load, or when `path` does not exist, creates it: 32 bytes from RAND_bytes, written to a
  // temporary file of mode 0600 in the same directory, synced and renamed into place (two
  // processes racing both end up with the one key that won).
  static absl::StatusOr<TokenKey> LoadOrCreate(const std::string& path);
  // A key from bytes (tests); they must be kKeyBytes long.
  static absl::StatusOr<TokenKey> FromBytes(std::string_view bytes);

  // kInvalidArgument when the claims break a rule Verify checks (bad field, lifetime not in
  // (0, kMaxLifetime], project set on a non-agent token or missing on an agent token).
  absl::StatusOr<std::string> Mint(const Claims& claims) const;
  // The token's claims when it is well formed, signed with this key, and `now` is before its
  // expiry; else kUnauthenticated with a reason ("malformed token", "bad signature", "token
  // expired", ...).
  absl::StatusOr<Claims> Verify(std::string_view token, absl::Time now) const;

  // HMAC-SHA256 with this key over `domain`, a newline and `message`: 32 raw bytes. For other
  // things signed with the same key (the orchestrator's task tokens); `domain` keeps each kind
  // from passing for another (bearer tokens sign "kiln1." + payload, which has no newline first).
  std::string Mac(std::string_view domain, std::string_view message) const;

  // HMAC-SHA256 set up once with the key (OpenSSL's MAC fetched and keyed), copied for each
  // call: every RPC checks a bearer token and most a task token, and OpenSSL's one-shot HMAC()
  // fetches the implementation (a lock on a global table) and keys it again each time.
  class Hmac;

 private:
  explicit TokenKey(std::string bytes);
  std::string Sign(std::string_view signed_part) const;

  std::string bytes_;
  // Shared by copies of this key; used read-only (each call works on its own copy).
  std::shared_ptr<const Hmac> hmac_;
};

}  // namespace kiln::auth
