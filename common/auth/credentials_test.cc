#include "common/auth/credentials.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/testutil/process.h"

namespace kiln::auth {
namespace {

TEST_CASE("EnsureAdminToken writes a 0600 admin token and keeps it while it is valid") {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/admin.token";
  auto key = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, 'a'));
  REQUIRE(key.ok());
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  REQUIRE(EnsureAdminToken(*key, path, now).ok());
  struct stat st = {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  auto first = ReadTokenFile(path);
  REQUIRE(first.ok());
  auto claims = key->Verify(*first, now);
  REQUIRE(claims.ok());
  CHECK(claims->scope == Scope::kAdmin);

  // Kept while more than the renewal margin is left; replaced near its end.
  REQUIRE(EnsureAdminToken(*key, path, now + absl::Hours(24)).ok());
  CHECK(ReadTokenFile(path).value() == *first);
  const absl::Time late = now + kAdminTokenLifetime - kAdminTokenRenewal + absl::Hours(1);
  REQUIRE(EnsureAdminToken(*key, path, late).ok());
  CHECK(ReadTokenFile(path).value() != *first);
  // And when another key made it.
  auto other = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, 'b'));
  REQUIRE(other.ok());
  REQUIRE(EnsureAdminToken(*other, path, now).ok());
  CHECK(other->Verify(ReadTokenFile(path).value(), now).ok());
}

TEST_CASE("ReadTokenFile trims and says what is wrong without the content") {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/t";
  CHECK(absl::IsNotFound(ReadTokenFile(path).status()));
  std::ofstream(path) << "  kiln1.abc.def \n";
  CHECK(ReadTokenFile(path).value() == "kiln1.abc.def");
  std::ofstream(path) << "\n";
  CHECK(absl::IsFailedPrecondition(ReadTokenFile(path).status()));
  std::ofstream(path) << std::string(token_limits::kMaxTokenBytes + 10, 's');
  auto too_long = ReadTokenFile(path);
  CHECK(absl::IsFailedPrecondition(too_long.status()));
  CHECK(too_long.status().message().find("sss") == std::string::npos);
  // An explicit token wins; an explicit file must exist.
  CHECK(ResolveClientToken("given", path).value() == "given");
  CHECK(absl::IsNotFound(ResolveClientToken("", dir.path() + "/missing").status()));
}

}  // namespace
}  // namespace kiln::auth
