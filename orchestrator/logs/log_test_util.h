// Shared by the log tests: a run written into the engine's tables the way the history engine
// writes it (an ExecutionState and the workflow's CurrentRun), so that log calls find it.
#pragma once

#include <string>

#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator::testing {

inline absl::Status PutRun(Store& store, const std::string& ns, const std::string& workflow_id,
                           const std::string& run_id) {
  kiln::internal::v1::ExecutionState state;
  state.set_namespace_(ns);
  state.set_workflow_id(workflow_id);
  state.set_run_id(run_id);
  kiln::internal::v1::CurrentRun current;
  current.set_run_id(run_id);
  WriteBatch batch;
  batch.Put(Table::kExecutions, keys::Execution(run_id), state.SerializeAsString());
  batch.Put(Table::kCurrent, keys::Current(ns, workflow_id), current.SerializeAsString());
  return store.Commit(batch);
}

}  // namespace kiln::orchestrator::testing
