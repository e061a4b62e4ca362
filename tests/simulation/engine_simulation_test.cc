// Seeded runs of the engine simulation (engine_simulation.h). A failure prints its seed; replay
// it alone with KILN_SIM_SEED=<seed>. KILN_SIM_SEEDS=<n> runs more seeds (make test runs 3,000).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/simulation/engine_simulation.h"

namespace kiln::orchestrator::simulation {
namespace {

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  uint64_t value = 0;
  return text != nullptr && absl::SimpleAtoi(text, &value) ? value : fallback;
}

TEST_CASE("The engine keeps every invariant under seeded faults and restarts") {
  uint64_t first = 1;
  uint64_t count = EnvNumber("KILN_SIM_SEEDS", 3'000);
  if (std::getenv("KILN_SIM_SEED") != nullptr) {
    first = EnvNumber("KILN_SIM_SEED", 1);
    count = 1;
  }
  SimulationResult total;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SimulationResult r = RunSimulation(seed);
    INFO("seed " << seed << " (replay: KILN_SIM_SEED=" << seed << ")");
    REQUIRE(r.violation == "");
    total.steps += r.steps;
    total.workflows_completed += r.workflows_completed;
    total.signals_delivered += r.signals_delivered;
    total.commit_faults += r.commit_faults;
    total.read_faults += r.read_faults;
    total.restarts += r.restarts;
    total.power_cuts += r.power_cuts;
    total.writes_lost += r.writes_lost;
    total.engine_errors += r.engine_errors;
  }
  // The chaos happened: the figures a reader of the log (and docs/reliability.md) can check.
  WARN("simulation: " << count << " seeds from " << first << ", " << total.steps << " steps, "
                      << total.workflows_completed << " workflows completed, "
                      << total.signals_delivered << " signals acknowledged, " << total.commit_faults
                      << " commit faults, " << total.read_faults << " read faults, "
                      << total.restarts << " restarts, " << total.power_cuts
                      << " power cuts losing " << total.writes_lost << " unsynced writes, "
                      << total.engine_errors << " engine errors answered");
  if (count >= 100) {
    CHECK(total.commit_faults > 0);
    CHECK(total.restarts > 0);
    CHECK(total.power_cuts > 0);
    CHECK(total.writes_lost > 0);
  }
}

// The power cut's checks can fail: on a store that acknowledges commits before they are durable
// (RocksDB with sync = false), a cut loses acknowledged transitions and the simulation says so.
TEST_CASE("The simulation notices acknowledged transitions a power cut lost") {
  SimulationOptions broken;
  broken.store_ignores_sync = true;
  int failed = 0;
  std::string first;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SimulationResult r = RunSimulation(seed, broken);
    if (r.violation.empty()) continue;
    if (first.empty()) first = absl::StrCat("seed ", seed, ": ", r.violation);
    ++failed;
  }
  WARN("a store that ignores sync: " << failed << " of 50 seeds fail; the first: " << first);
  CHECK(failed > 0);
}

}  // namespace
}  // namespace kiln::orchestrator::simulation
