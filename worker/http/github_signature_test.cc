#include "worker/http/github_signature.h"

#include <catch2/catch.hpp>

namespace kiln::worker {
namespace {

// GitHub's documented test vector ("Validating webhook deliveries").
constexpr char kSecret[] = "It's a Secret to Everybody";
constexpr char kBody[] = "Hello, World!";
constexpr char kSignature[] =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

TEST_CASE("GithubSignature matches GitHub's documented example") {
  CHECK(GithubSignature(kSecret, kBody) == kSignature);
}

TEST_CASE("VerifyGithubSignature accepts the right digest in either case") {
  CHECK(VerifyGithubSignature(kSignature, kSecret, kBody));
  CHECK(VerifyGithubSignature(
      "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17", kSecret, kBody));
}

TEST_CASE("VerifyGithubSignature refuses everything else") {
  CHECK_FALSE(VerifyGithubSignature(kSignature, "another secret", kBody));
  CHECK_FALSE(VerifyGithubSignature(kSignature, kSecret, "Hello, World?"));
  CHECK_FALSE(VerifyGithubSignature(kSignature, "", kBody));
  CHECK_FALSE(VerifyGithubSignature("", kSecret, kBody));
  CHECK_FALSE(VerifyGithubSignature(
      "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", kSecret, kBody));
  CHECK_FALSE(VerifyGithubSignature(
      "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1", kSecret, kBody));
  CHECK_FALSE(VerifyGithubSignature(
      "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 ", kSecret, kBody));
  CHECK_FALSE(VerifyGithubSignature(
      "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g", kSecret, kBody));
  // An empty secret never verifies, even against its own digest.
  CHECK_FALSE(VerifyGithubSignature(GithubSignature("", kBody), "", kBody));
}

}  // namespace
}  // namespace kiln::worker
