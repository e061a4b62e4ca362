// What the WorkflowService frontend runs on: the engine, matching and run watchers it calls,
// the clock, ids, executor and metrics registry it uses, and its limits. Borrowed pointers: they
// outlive the frontend.
#pragma once

#include <string>

#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/ids.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/history/run_watchers.h"
#include "orchestrator/matching/matching.h"
#include "orchestrator/persistence/store.h"
#include "orchestrator/rpc/authorizer.h"

namespace kiln::orchestrator {

struct FrontendDeps {
  HistoryEngine* engine;
  Matching* matching;
  RunWatchers* watchers;
  Clock* clock;
  IdGenerator* ids;
  Executor* executor;
  prometheus::Registry* registry;
  std::string data_dir;
  // Long polls end (empty answer) after this long at most.
  absl::Duration long_poll = absl::Seconds(60);
  // Who may call what (authorizer.h); null: everyone may call everything.
  Authorizer* authorizer = nullptr;
  // Whether the store takes writes, for GetSystemInfo; null: not reported.
  Store* store = nullptr;
};

}  // namespace kiln::orchestrator
