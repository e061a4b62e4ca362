// A test's own orchestrator, for Catch2 tests: started on a fresh data directory (the test
// fails if it cannot start) with an SDK client over its admin connection.
#pragma once

#include <memory>

#include <catch2/catch.hpp>

#include "sdk/client.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {

struct FreshOrchestrator {
  FreshOrchestrator() {
    REQUIRE(orchestrator.Start().ok());
    client = std::make_unique<sdk::Client>(orchestrator.connection());
  }
  TempDir dir;
  OrchestratorProcess orchestrator{dir.path() + "/data"};
  std::unique_ptr<sdk::Client> client;
};

}  // namespace kiln::testutil
