// Task tokens come back from workers, who may forge or alter them: whatever the bytes, Decode
// answers kInvalidArgument or kPermissionDenied unless the token is this key's; a token this key
// encodes (every token names its run) decodes to the same fields, and any changed byte of it is
// refused.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "orchestrator/history/task_token.h"

namespace {

const kiln::orchestrator::TaskTokenCodec& Codec() {
  static const auto* codec =
      new kiln::orchestrator::TaskTokenCodec(kiln::orchestrator::TaskTokenCodec::WithRandomKey());
  return *codec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = Codec().Decode(bytes);
  if (!decoded.ok() && decoded.status().code() != absl::StatusCode::kInvalidArgument &&
      decoded.status().code() != absl::StatusCode::kPermissionDenied) {
    std::abort();
  }
  // The same bytes as the fields of a token: signed, it round-trips; altered, it is refused.
  kiln::internal::v1::TaskToken token;
  // The engine only ever encodes tokens of a run.
  if (!token.ParseFromString(bytes) || token.run_id().empty()) return 0;
  const std::string encoded = Codec().Encode(token);
  auto back = Codec().Decode(encoded);
  if (!back.ok() || back->SerializeAsString() != token.SerializeAsString()) std::abort();
  if (!encoded.empty()) {
    std::string altered = encoded;
    altered[size % altered.size()] ^= 0x01;
    if (Codec().Decode(altered).ok()) std::abort();
  }
  return 0;
}
