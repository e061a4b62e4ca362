// Every binary starts, answers --help and --version, refuses bad flags, and the orchestrator
// serves health and metrics on loopback, then stops cleanly on SIGTERM.
#include <signal.h>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "sdk/connection.h"
#include "tests/testutil/http.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

using testutil::BinaryPath;
using testutil::RunCommand;

TEST_CASE("Every binary answers --help and --version and refuses an unknown flag") {
  for (const char* name : {"kiln-orchestrator", "kiln-worker", "kiln-builder-agent", "kiln"}) {
    INFO(name);
    std::string out;
    REQUIRE(RunCommand(BinaryPath(name), {"--help"}, &out).value() == 0);
    REQUIRE(out.find("Usage") != std::string::npos);
    REQUIRE(RunCommand(BinaryPath(name), {"--version"}, &out).value() == 0);
    REQUIRE(out.find(kVersion) != std::string::npos);
    REQUIRE(RunCommand(BinaryPath(name), {"--no-such-flag"}, &out).value() == 2);
  }
}

TEST_CASE("A bad flag value is named in the error") {
  std::string out;
  REQUIRE(
      RunCommand(BinaryPath("kiln-orchestrator"), {"--listen", "127.0.0.1:70000"}, &out).value() ==
      2);
  REQUIRE(out.find("127.0.0.1:70000") != std::string::npos);
  REQUIRE(
      RunCommand(BinaryPath("kiln-orchestrator"), {"--store", "mysql://db/kiln"}, &out).value() ==
      2);
  REQUIRE(out.find("mysql://db/kiln") != std::string::npos);
}

TEST_CASE("The orchestrator serves health and metrics and stops cleanly on SIGTERM") {
  testutil::TempDir dir;
  int port = testutil::FreePort();
  int metrics_port = testutil::FreePort();
  std::string address = absl::StrCat("127.0.0.1:", port);
  auto orchestrator =
      testutil::Process::Start(BinaryPath("kiln-orchestrator"),
                               {"--data-dir", dir.path() + "/data", "--listen", address,
                                "--metrics", absl::StrCat("127.0.0.1:", metrics_port)},
                               dir.path() + "/orchestrator.log");
  REQUIRE(orchestrator.ok());

  sdk::Connection connection(address);
  REQUIRE(connection.CheckHealth(absl::Seconds(20)).ok());

  // The first start wrote the local admin credential the CLI presents.
  const std::string token_file = dir.path() + "/data/admin.token";
  std::string out;
  REQUIRE(RunCommand(BinaryPath("kiln"), {"--address", address, "health"}, &out).value() == 0);
  REQUIRE(out.find("SERVING") != std::string::npos);
  REQUIRE(RunCommand(BinaryPath("kiln"), {"--address", address, "--token-file", token_file, "info"},
                     &out)
              .value() == 0);
  REQUIRE(out.find(kVersion) != std::string::npos);

  auto metrics = testutil::HttpGet("127.0.0.1", metrics_port, "/metrics");
  REQUIRE(metrics.ok());
  REQUIRE(metrics->find("# TYPE") != std::string::npos);
  // The group commit's counters: the start's own commits (its task-id block) made one at least.
  CHECK(metrics->find("# TYPE kiln_store_commit_groups_total counter") != std::string::npos);
  CHECK(metrics->find("# TYPE kiln_store_commits_on_caller_total counter") != std::string::npos);
  CHECK(metrics->find("\nkiln_store_commit_groups_total 0\n") == std::string::npos);

  // A worker connects, then stops on SIGTERM.
  auto worker =
      testutil::Process::Start(BinaryPath("kiln-worker"),
                               {"--orchestrator", address, "--data-dir", dir.path() + "/worker",
                                "--listen", absl::StrCat("127.0.0.1:", testutil::FreePort()),
                                "--http", absl::StrCat("127.0.0.1:", testutil::FreePort()),
                                "--auth-key-file", dir.path() + "/data/auth.key"},
                               dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  REQUIRE(testutil::WaitFor(
      [&] { return (*worker)->Output().find("worker.connected") != std::string::npos; },
      absl::Seconds(20)));
  (*worker)->Signal(SIGTERM);
  REQUIRE((*worker)->Wait(absl::Seconds(20)).value() == 0);

  (*orchestrator)->Signal(SIGTERM);
  REQUIRE((*orchestrator)->Wait(absl::Seconds(20)).value() == 0);
  REQUIRE((*orchestrator)->Output().find("orchestrator.stopped") != std::string::npos);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // The build links jemalloc into the orchestrator (orchestrator/CMakeLists.txt says why).
  REQUIRE((*orchestrator)->Output().find("allocator=\"jemalloc") != std::string::npos);
#endif

  // Once it is gone, the CLI says so and exits 4 (unreachable).
  REQUIRE(RunCommand(BinaryPath("kiln"), {"--address", address, "health", "--timeout", "0.5"}, &out)
              .value() == 4);
}

}  // namespace
}  // namespace kiln
