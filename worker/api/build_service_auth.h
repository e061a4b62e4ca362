// Who may call kiln-worker's BuildService: the bearer token of each call
// (`authorization: Bearer <token>`, common/auth/token.h), verified with the orchestrator's key
// that kiln-worker already holds to mint its agents' tokens.
//   admin      every method.
//   read-only  the reads: GetProject, ListProjects, ListDeployments, GetDeployment, FollowLog.
//   worker, agent, no token, a token that does not verify: nothing (kUnauthenticated for a
//              missing or bad token, kPermissionDenied for a scope that may not).
// Errors name the method, never the token.
// Revocation lives in the orchestrator (`kiln token revoke`): with a confirmer, a token that
// verifies here is also confirmed there (a call made with it), and a confirmation is trusted for
// kTokenConfirmedFor, so a revoked token is refused here within that time.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/token.h"

namespace kiln::worker {

class BuildServiceAuth {
 public:
  // `key` unset: kiln-worker has no key file; every call is refused (FAILED_PRECONDITION).
  // Whether the orchestrator still takes `token`: OK; kUnauthenticated when it refuses it
  // (revoked); another error when it could not be asked (the call is then refused too).
  using TokenConfirmer = std::function<absl::Status(std::string_view token)>;

  explicit BuildServiceAuth(std::optional<auth::TokenKey> key, TokenConfirmer confirm = nullptr)
      : key_(std::move(key)), confirm_(std::move(confirm)) {}

  grpc::Status Check(const grpc::ServerContext& context, std::string_view method, bool read) const;
  // The same check on the value of an `authorization` header (null: none sent), for callers
  // that are not gRPC (the web console's API, worker/console).
  grpc::Status CheckAuthorization(const std::string* authorization, std::string_view method,
                                  bool read) const;

 private:
  grpc::Status Confirm(std::string_view token) const;

  std::optional<auth::TokenKey> key_;
  TokenConfirmer confirm_;
  mutable absl::Mutex mu_;
  // Token → when the orchestrator last confirmed it. Bounded: cleared when full.
  mutable absl::flat_hash_map<std::string, absl::Time> confirmed_ ABSL_GUARDED_BY(mu_);
};

inline constexpr absl::Duration kTokenConfirmedFor = absl::Seconds(5);
inline constexpr size_t kMaxConfirmedTokens = 1024;

}  // namespace kiln::worker
