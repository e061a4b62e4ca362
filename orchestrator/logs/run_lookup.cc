#include "orchestrator/logs/run_lookup.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {

absl::StatusOr<std::string> ResolveLogRun(Store& store, const std::string& ns,
                                          const kiln::api::v1::WorkflowExecution& execution) {
  const std::string& workflow_id = execution.workflow_id();
  std::string run_id = execution.run_id();
  if (run_id.empty()) {
    ASSIGN_OR_RETURN(auto current, store.Get(Table::kCurrent, keys::Current(ns, workflow_id)));
    if (!current.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("workflow ", workflow_id, " not found in namespace ", ns));
    }
    kiln::internal::v1::CurrentRun parsed;
    if (!parsed.ParseFromString(*current) || parsed.run_id().empty()) {
      return absl::DataLossError(absl::StrCat("current run of ", workflow_id, " is corrupt"));
    }
    run_id = parsed.run_id();
  }
  ASSIGN_OR_RETURN(auto stored, store.Get(Table::kExecutions, keys::Execution(run_id)));
  if (!stored.has_value()) {
    return absl::NotFoundError(absl::StrCat("workflow run ", run_id, " not found"));
  }
  kiln::internal::v1::ExecutionState state;
  if (!state.ParseFromString(*stored) || state.run_id() != run_id) {
    return absl::DataLossError(absl::StrCat("state of run ", run_id, " is corrupt"));
  }
  if (state.namespace_() != ns || (!workflow_id.empty() && state.workflow_id() != workflow_id)) {
    return absl::NotFoundError(absl::StrCat("workflow run ", run_id, " not found in workflow ",
                                            workflow_id, " (namespace ", ns, ")"));
  }
  return run_id;
}

}  // namespace kiln::orchestrator
