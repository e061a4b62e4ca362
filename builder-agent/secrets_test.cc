// SecretStore: secrets from KILN_SECRET_<NAME> variables and a secrets file, looked up by name,
// removed from the environment, and redacted from text; bad names and values refused without
// echoing a value.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "builder-agent/secrets.h"
#include "tests/testutil/process.h"

namespace kiln::builder {
namespace {

TEST_CASE("Secrets come from the environment and a file, and are redacted", "[builder]") {
  testutil::TempDir dir;
  const std::string file = dir.path() + "/secrets";
  std::ofstream(file) << "# machine metadata\n\nDB_PASSWORD=hunter2-db\r\nAPI_KEY=from-file\n";
  setenv("KILN_SECRET_API_KEY", "from-env", 1);
  setenv("KILN_SECRET_REGISTRY_TOKEN", "tok-123456", 1);
  char* env[] = {const_cast<char*>("KILN_SECRET_API_KEY=from-env"),
                 const_cast<char*>("KILN_SECRET_REGISTRY_TOKEN=tok-123456"),
                 const_cast<char*>("HOME=/root"), nullptr};
  auto store = SecretStore::Load(env, file, /*unset_env=*/true);
  REQUIRE(store.ok());
  REQUIRE(store->size() == 3);
  REQUIRE(store->Get("API_KEY").value() == "from-file");  // the file wins
  REQUIRE(store->Get("REGISTRY_TOKEN").value() == "tok-123456");
  REQUIRE(store->Get("DB_PASSWORD").value() == "hunter2-db");
  // No child process inherits them.
  REQUIRE(getenv("KILN_SECRET_API_KEY") == nullptr);
  REQUIRE(getenv("KILN_SECRET_REGISTRY_TOKEN") == nullptr);

  absl::Status missing = store->Get("NOPE").status();
  REQUIRE(missing.code() == absl::StatusCode::kNotFound);
  REQUIRE(absl::StrContains(missing.message(), "KILN_SECRET_NOPE"));
  REQUIRE(store->Get("bad-name").status().code() == absl::StatusCode::kInvalidArgument);

  REQUIRE(store->Redact("login tok-123456 with hunter2-db; again hunter2-db") ==
          "login *** with ***; again ***");
  // Redacted, but not to be had by name.
  store->AlsoRedact("orchestrator-token-9");
  REQUIRE(store->Redact("bearer orchestrator-token-9") == "bearer ***");
  REQUIRE(store->size() == 3);
  REQUIRE(store->Values().size() == 4);
}

TEST_CASE("A malformed secrets file is refused without echoing its lines", "[builder]") {
  testutil::TempDir dir;
  const std::string file = dir.path() + "/secrets";
  std::ofstream(file) << "GOOD=1\nthis-line-is-a-leaked-value\n";
  char* env[] = {nullptr};
  auto store = SecretStore::Load(env, file, /*unset_env=*/false);
  REQUIRE(store.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(absl::StrContains(store.status().message(), "line 2"));
  REQUIRE_FALSE(absl::StrContains(store.status().message(), "leaked"));
  REQUIRE(SecretStore::Load(env, dir.path() + "/absent", false).status().code() ==
          absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kiln::builder
