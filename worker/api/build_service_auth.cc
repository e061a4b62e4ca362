#include "worker/api/build_service_auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::worker {
namespace {

constexpr std::string_view kBearer = "bearer ";

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

grpc::Status BuildServiceAuth::Check(const grpc::ServerContext& context, std::string_view method,
                                     bool read) const {
  const auto& metadata = context.client_metadata();
  auto header = metadata.find("authorization");
  if (header == metadata.end()) return CheckAuthorization(nullptr, method, read);
  const std::string value(header->second.data(), header->second.size());
  return CheckAuthorization(&value, method, read);
}

grpc::Status BuildServiceAuth::CheckAuthorization(const std::string* authorization,
                                                  std::string_view method, bool read) const {
  if (!key_) {
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        absl::StrCat(Absl(method), ": kiln-worker has no --auth-key-file to verify tokens with"));
  }
  if (authorization == nullptr) {
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        absl::StrCat(Absl(method), ": a token is required (authorization: Bearer)"));
  }
  std::string_view value(*authorization);
  if (value.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(Absl(value.substr(0, kBearer.size())), Absl(kBearer))) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization: expected 'Bearer <token>'");
  }
  absl::StatusOr<auth::Claims> claims = key_->Verify(value.substr(kBearer.size()), absl::Now());
  if (!claims.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(claims.status().message()));
  }
  if (claims->scope == auth::Scope::kAdmin || (claims->scope == auth::Scope::kReadOnly && read)) {
    return Confirm(value.substr(kBearer.size()));
  }
  return grpc::Status(
      grpc::StatusCode::PERMISSION_DENIED,
      absl::StrCat(Absl(method), ": a ", Absl(auth::ScopeName(claims->scope)),
                   " token may not call it (", read ? "admin or read-only" : "admin", " only)"));
}

grpc::Status BuildServiceAuth::Confirm(std::string_view token) const {
  if (!confirm_) return grpc::Status::OK;
  const absl::Time now = absl::Now();
  const absl::string_view key(token.data(), token.size());
  {
    absl::MutexLock lock(&mu_);
    auto it = confirmed_.find(key);
    if (it != confirmed_.end() && now - it->second < kTokenConfirmedFor) return grpc::Status::OK;
  }
  absl::Status confirmed = confirm_(token);
  if (absl::IsUnauthenticated(confirmed)) {
    absl::MutexLock lock(&mu_);
    confirmed_.erase(key);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the orchestrator refuses this token (revoked?)");
  }
  if (!confirmed.ok()) {
    // Fail closed: a token that cannot be confirmed is not taken.
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("cannot confirm the token with the orchestrator: ", confirmed.message()));
  }
  absl::MutexLock lock(&mu_);
  if (confirmed_.size() >= kMaxConfirmedTokens) confirmed_.clear();
  confirmed_[std::string(token)] = now;
  return grpc::Status::OK;
}

}  // namespace kiln::worker
