// GitHub's webhook signature: X-Hub-Signature-256 is "sha256=" and the lower-case hex of
// HMAC-SHA256(secret, raw body). Checked on the raw bytes before anything parses them, and
// compared in constant time so a forger learns nothing from how long a refusal takes.
#pragma once

#include <string>
#include <string_view>

namespace kiln::worker {

// The header name GitHub signs with (SHA-1's X-Hub-Signature is not accepted).
inline constexpr std::string_view kGithubSignatureHeader = "X-Hub-Signature-256";

// "sha256=<64 hex digits>" for `body` under `secret`, as GitHub computes it.
std::string GithubSignature(std::string_view secret, std::string_view body);

// Whether `header` (the X-Hub-Signature-256 value) is the signature of `body` under `secret`.
// False for an empty secret, a header not of the form "sha256=<64 hex digits>" (either case),
// or any other digest.
bool VerifyGithubSignature(std::string_view header, std::string_view secret, std::string_view body);

}  // namespace kiln::worker
