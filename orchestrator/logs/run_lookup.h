// Which run a log request names, checked against the engine's tables: the run must exist in
// the namespace (and under the workflow id, when given). An empty run id means the workflow's
// current run. Logs attach to runs of any status: a closed run's logs can still be written and
// read until retention deletes them (DeleteRunLogs).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "kiln/api/v1/common.pb.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator {

// The run id, or kNotFound naming what is missing.
absl::StatusOr<std::string> ResolveLogRun(Store& store, const std::string& ns,
                                          const kiln::api::v1::WorkflowExecution& execution);

}  // namespace kiln::orchestrator
