// A deterministic simulation of the history engine: its real code on a fake clock, an in-memory
// store behind a fault injector, and simulated clients and workers that a seeded random source
// drives. Each step the source picks what happens next: a start, a poll and its answer (or no
// answer, so the task times out), a late answer to a task that went stale, a signal, time
// passing, a restart of the engine on the same store, store faults (a commit refused, a
// commit applied but reported failed, a failed read), and power cuts: the store loses every
// write after its last sync point (FaultInjectingStore::CutPower keeps a seeded prefix of the
// unsynced log) and the engine restarts on what is left, while the workers keep the tasks they
// hold and answer them later. The workers' workflow is a small program decided from its
// history, as an SDK's would be.
//
// After the chaos the faults stop and the world drains; then every invariant is checked:
//   - every started workflow closed exactly once, COMPLETED, with the result its history says;
//   - every history is gapless (event ids 1..n), starts with the start and ends with the close;
//   - every signal a client was told was delivered is in the history exactly once, and no
//     signal is in it twice (retries after an unknown outcome reuse the request id);
//   - nothing acknowledged was lost to a power cut: every start answered is there, every
//     activity completion and workflow task completion the engine answered OK is in the history;
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
  // Probability, per step, of a power cut (the unsynced writes lost, then a restart).
  double power_cut_rate = 0.01;
  // A broken store for proving the checks: every commit acknowledged before it is durable (as
  // RocksDB's WriteOptions::sync = false), so a power cut loses acknowledged transitions.
  bool store_ignores_sync = false;
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
  int64_t power_cuts = 0;
  // Batches a power cut took back (applied, never made durable).
  int64_t writes_lost = 0;
  int64_t engine_errors = 0;
};

SimulationResult RunSimulation(uint64_t seed, const SimulationOptions& options = {});

}  // namespace kiln::orchestrator::simulation
