// A deterministic simulation of the history engine: its real code on a fake clock, an in-memory
// store behind a fault injector, and simulated clients and workers that a seeded random source
// drives. Each step the source picks what happens next: a start, a poll and its answer (or no
// answer, so the task times out), a late answer to a task that went stale, a signal, time
// passing, a restart of the engine on the same store, and store faults (a commit refused, a
// commit applied but reported failed, a failed read). The workers' workflow is a small program
// decided from its history, as an SDK's would be.
//
// After the chaos the faults stop and the world drains; then every invariant is checked:
//   - every started workflow closed exactly once, COMPLETED, with the result its history says;
//   - every history is gapless (event ids 1..n), starts with the start and ends with the close;
//   - every signal a client was told was delivered is in the history exactly once, and no
//     signal is in it twice (retries after an unknown outcome reuse the request id);
//   - no task, timer or transfer is left behind (only retention timers remain);
//   - a fresh engine on the same store describes each run as its history says.
// Everything that happens depends on the seed only, so a failing seed replays its run.
#pragma once

#include <cstdint>
#include <string>

namespace kiln::orchestrator::simulation {

struct SimulationOptions {
  int workflows = 6;
  int chaos_steps = 400;
  // Probability that a commit (or a read) fails while the chaos lasts.
  double commit_fault_rate = 0.05;
  double read_fault_rate = 0.02;
  // Probability, per step, that the engine restarts (its caches gone, the store kept).
  double restart_rate = 0.01;
};

struct SimulationResult {
  // Empty when every invariant held; else the first violation, with the step it was seen at.
  std::string violation;
  int64_t steps = 0;
  int64_t workflows_completed = 0;
  int64_t signals_delivered = 0;
  int64_t commit_faults = 0;
  int64_t read_faults = 0;
  int64_t restarts = 0;
  int64_t engine_errors = 0;
};

SimulationResult RunSimulation(uint64_t seed, const SimulationOptions& options = {});

}  // namespace kiln::orchestrator::simulation
