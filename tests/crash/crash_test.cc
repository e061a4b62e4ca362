// The kill -9 workload (kill_nine_workload.h) on the default store, RocksDB in the data dir.
#include <catch2/catch.hpp>

#include "tests/crash/kill_nine_workload.h"

namespace kiln {
namespace {

TEST_CASE("kill -9 mid-run loses nothing and duplicates nothing") { RunKillNineWorkload({}); }

TEST_CASE("kill -9 mid-run with workers on the push stream loses nothing and duplicates nothing") {
  RunKillNineWorkload({}, KillNineWorkers::kSdkStream);
}

}  // namespace
}  // namespace kiln
