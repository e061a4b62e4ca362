// Who may call kiln-worker's BuildService: the bearer token of each call
// (`authorization: Bearer <token>`, common/auth/token.h), verified with the orchestrator's key
// that kiln-worker already holds to mint its agents' tokens.
//   admin      every method.
//   read-only  the reads: GetProject, ListProjects, ListDeployments, GetDeployment, FollowLog.
//   worker, agent, no token, a token that does not verify: nothing (kUnauthenticated for a
//              missing or bad token, kPermissionDenied for a scope that may not).
// Errors name the method, never the token.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/server_context.h>

#include "common/auth/token.h"

namespace kiln::worker {

class BuildServiceAuth {
 public:
  // `key` unset: kiln-worker has no key file; every call is refused (FAILED_PRECONDITION).
  explicit BuildServiceAuth(std::optional<auth::TokenKey> key) : key_(std::move(key)) {}

  grpc::Status Check(const grpc::ServerContext& context, std::string_view method, bool read) const;
  // The same check on the value of an `authorization` header (null: none sent), for callers
  // that are not gRPC (the web console's API, worker/console).
  grpc::Status CheckAuthorization(const std::string* authorization, std::string_view method,
                                  bool read) const;

 private:
  std::optional<auth::TokenKey> key_;
};

}  // namespace kiln::worker
