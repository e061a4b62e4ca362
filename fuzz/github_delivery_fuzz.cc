// The GitHub webhook's untrusted input: the signature header and the delivery body. Whatever
// the bytes, the signature check answers yes or no, and the parser a delivery or
// kInvalidArgument, within its bounds.
// Input: event name, NUL, signature header, NUL, body.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "worker/http/github_payload.h"
#include "worker/http/github_signature.h"

namespace {

std::string_view Next(std::string_view& rest) {
  size_t nul = rest.find('\0');
  std::string_view part = rest.substr(0, nul);
  rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  return part;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string_view event = Next(rest);
  std::string_view header = Next(rest);
  std::string_view body = rest;
  constexpr std::string_view kSecret = "fuzz-secret";
  const bool signed_ok = kiln::worker::VerifyGithubSignature(header, kSecret, body);
  // Only the real signature passes (its hex digits in either case: the same MAC).
  if (signed_ok && !absl::EqualsIgnoreCase(absl::string_view(header.data(), header.size()),
                                           kiln::worker::GithubSignature(kSecret, body))) {
    std::abort();
  }
  auto delivery = kiln::worker::ParseGithubDelivery(event, body);
  if (!delivery.ok()) {
    if (delivery.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (delivery->branch.size() > kiln::worker::kMaxGithubRefBytes ||
      delivery->message.size() > kiln::worker::kMaxGithubMessageBytes) {
    std::abort();
  }
  return 0;
}
