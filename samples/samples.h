// Sample workflows and their activities, hosted by kiln-worker on task queue "samples" and used
// by the demo, the integration tests and the engine benchmark.
//   Hello           one activity:  Greet(name) -> "Hello, <name>!"
//   ThreeSteps      three activities in sequence: Upper -> Reverse -> Exclaim
//   TimerParallel   a durable timer (input: seconds), then three Square activities at once;
//                   the result is the sum of the squares, "14"
#pragma once

#include <string>

#include "sdk/activity_worker.h"
#include "sdk/workflow_worker.h"

namespace kiln::samples {

inline constexpr char kTaskQueue[] = "samples";

sdk::Task<absl::StatusOr<sdk::api::Payloads>> Hello(sdk::WorkflowContext& ctx,
                                                    sdk::api::Payloads input);
sdk::Task<absl::StatusOr<sdk::api::Payloads>> ThreeSteps(sdk::WorkflowContext& ctx,
                                                         sdk::api::Payloads input);
sdk::Task<absl::StatusOr<sdk::api::Payloads>> TimerParallel(sdk::WorkflowContext& ctx,
                                                            sdk::api::Payloads input);

void RegisterWorkflows(sdk::WorkflowWorker& worker);
absl::Status RegisterActivities(sdk::ActivityWorker& worker);

}  // namespace kiln::samples
