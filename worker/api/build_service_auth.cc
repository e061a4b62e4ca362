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
  if (claims->scope == auth::Scope::kAdmin) return grpc::Status::OK;
  if (claims->scope == auth::Scope::kReadOnly && read) return grpc::Status::OK;
  return grpc::Status(
      grpc::StatusCode::PERMISSION_DENIED,
      absl::StrCat(Absl(method), ": a ", Absl(auth::ScopeName(claims->scope)),
                   " token may not call it (", read ? "admin or read-only" : "admin", " only)"));
}

}  // namespace kiln::worker
