#include "worker/http/github_signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdint>
#include <string>

namespace kiln::worker {
namespace {

constexpr std::string_view kPrefix = "sha256=";
constexpr size_t kDigestBytes = 32;

using Digest = std::array<unsigned char, kDigestBytes>;

bool Hmac(std::string_view secret, std::string_view body, Digest* out) {
  unsigned int length = 0;
  unsigned char* result =
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(body.data()), body.size(), out->data(), &length);
  return result != nullptr && length == kDigestBytes;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string GithubSignature(std::string_view secret, std::string_view body) {
  static constexpr char kHex[] = "0123456789abcdef";
  Digest digest{};
  if (!Hmac(secret, body, &digest)) return "";
  std::string out(kPrefix);
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

bool VerifyGithubSignature(std::string_view header, std::string_view secret,
                           std::string_view body) {
  // An empty secret would let anyone who knows that sign; such a project has no webhook.
  if (secret.empty()) return false;
  if (!header.starts_with(kPrefix)) return false;
  std::string_view hex = header.substr(kPrefix.size());
  if (hex.size() != 2 * kDigestBytes) return false;
  Digest claimed{};
  for (size_t i = 0; i < kDigestBytes; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    claimed[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  Digest expected{};
  if (!Hmac(secret, body, &expected)) return false;
  return CRYPTO_memcmp(claimed.data(), expected.data(), kDigestBytes) == 0;
}

}  // namespace kiln::worker
