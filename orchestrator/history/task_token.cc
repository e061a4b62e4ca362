#include "orchestrator/history/task_token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <iostream>

namespace kiln::orchestrator {
namespace {

constexpr std::string_view kDomain = "kiln-task-token";
constexpr size_t kMacBytes = 32;

}  // namespace

TaskTokenCodec TaskTokenCodec::WithRandomKey() {
  std::string bytes(auth::token_limits::kKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size())) !=
      1) {
    std::cerr << "RAND_bytes failed to make a task token key\n";
    std::abort();  // No entropy: nothing the engine signs could be trusted.
  }
  return TaskTokenCodec(auth::TokenKey::FromBytes(bytes).value());
}

std::string TaskTokenCodec::Encode(const internal::TaskToken& token) const {
  std::string bytes = token.SerializeAsString();
  bytes += key_.Mac(kDomain, bytes);
  return bytes;
}

absl::StatusOr<internal::TaskToken> TaskTokenCodec::Decode(const std::string& bytes) const {
  if (bytes.size() <= kMacBytes) return absl::InvalidArgumentError("task_token: malformed");
  const std::string_view body(bytes.data(), bytes.size() - kMacBytes);
  const std::string expected = key_.Mac(kDomain, body);
  if (expected.size() != kMacBytes ||
      CRYPTO_memcmp(expected.data(), bytes.data() + body.size(), kMacBytes) != 0) {
    return absl::PermissionDeniedError(
        "task_token: not signed by this orchestrator (forged or altered)");
  }
  internal::TaskToken token;
  if (!token.ParseFromArray(body.data(), static_cast<int>(body.size())) || token.run_id().empty()) {
    return absl::InvalidArgumentError("task_token: malformed");
  }
  return token;
}

}  // namespace kiln::orchestrator
