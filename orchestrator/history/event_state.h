// The pending state an event records, derived from the event alone: what a command handler
// (commands.cc) keeps in the run's state when it appends the event, and what a reset
// (reset.cc) rebuilds when it replays a copied history.
#pragma once

#include "absl/time/time.h"
#include "kiln/api/v1/history.pb.h"
#include "kiln/internal/v1/persistence.pb.h"

namespace kiln::orchestrator {

// The pending activity an ActivityTaskScheduled event records, at its first attempt.
kiln::internal::v1::ActivityInfo ScheduledActivity(const kiln::api::v1::HistoryEvent& event);

// The pending timer a TimerStarted event records, due at `fire_time`.
kiln::internal::v1::TimerInfo StartedTimer(const kiln::api::v1::HistoryEvent& event,
                                           absl::Time fire_time);

// Merges a ModifyWorkflowProperties memo into the run's, as Temporal's server does: each field
// replaces the run's field of that name, and a field whose value is a null (an empty Payload, or
// one encoded "binary/null" as the SDKs encode null and undefined) or an empty JSON list removes
// it.
void ApplyMemoUpsert(const kiln::api::v1::Memo& upsert, kiln::api::v1::Memo* run);

}  // namespace kiln::orchestrator
