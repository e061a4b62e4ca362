// Workflow executions as text: the table `kiln workflow list` prints and the report
// `kiln workflow describe` prints (status, times, pending workflow task, activities, timers).
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "kiln/api/v1/workflow_service.pb.h"

namespace kiln::cli {

// WORKFLOW ID, RUN ID, TYPE, STATUS, START (UTC), CLOSE, EVENTS; a header even when empty.
std::string FormatExecutionList(const std::vector<api::v1::WorkflowExecutionInfo>& executions);

// The multi-line describe report. `now` is used for ages ("heartbeat 3s ago").
std::string FormatDescription(const api::v1::DescribeWorkflowExecutionResponse& description,
                              absl::Time now);

}  // namespace kiln::cli
