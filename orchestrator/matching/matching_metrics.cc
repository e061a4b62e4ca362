#include "orchestrator/matching/matching_metrics.h"

#include <algorithm>
#include <exception>

#include "common/logging.h"
#include "common/metrics.h"

namespace kiln::orchestrator::matching_internal {

const char* TaskKindName(keys::TaskKind kind) {
  return kind == keys::TaskKind::kWorkflow ? "workflow" : "activity";
}

namespace {

void Move(prometheus::Gauge* gauge, int64_t delta) {
  if (gauge == nullptr) return;
  if (delta >= 0) {
    gauge->Increment(static_cast<double>(delta));
  } else {
    gauge->Decrement(static_cast<double>(-delta));
  }
}

const char* PollResultName(PollResult result) {
  switch (result) {
    case PollResult::kSyncMatch:
      return "sync_match";
    case PollResult::kBacklog:
      return "backlog";
    case PollResult::kTimeout:
      return "timeout";
    case PollResult::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

}  // namespace

MatchingMetrics::MatchingMetrics(prometheus::Registry* registry) {
  if (registry == nullptr) return;
  const keys::TaskKind kinds[kKinds] = {keys::TaskKind::kWorkflow, keys::TaskKind::kActivity};
  try {
    // prometheus-cpp reports a name already taken by another metric type by throwing; no
    // exception leaves this constructor, matching then records nothing.
    auto& results = prometheus::BuildCounter()
                        .Name("kiln_matching_poll_results_total")
                        .Help("Answered polls, by task kind and how they were answered.")
                        .Register(*registry);
    auto& latency = prometheus::BuildHistogram()
                        .Name("kiln_matching_schedule_to_start_seconds")
                        .Help("Time from a task's creation to its hand-out to a poller.")
                        .Register(*registry);
    auto& waiting = prometheus::BuildGauge()
                        .Name("kiln_matching_waiting_polls")
                        .Help("Polls waiting for a task, by task kind.")
                        .Register(*registry);
    auto& buffered = prometheus::BuildGauge()
                         .Name("kiln_matching_buffered_tasks")
                         .Help("Tasks held in matching's in-memory queue buffers.")
                         .Register(*registry);
    for (keys::TaskKind kind : kinds) {
      int k = KindIndex(kind);
      for (int r = 0; r < kPollResultCount; ++r) {
        poll_results_[k][r] = &results.Add(
            {{"kind", TaskKindName(kind)}, {"result", PollResultName(static_cast<PollResult>(r))}});
      }
      schedule_to_start_[k] = &latency.Add({{"kind", TaskKindName(kind)}}, LatencyBuckets());
      waiting_polls_[k] = &waiting.Add({{"kind", TaskKindName(kind)}});
    }
    buffered_tasks_ = &buffered.Add({});
  } catch (const std::exception& e) {
    LogError("matching.metrics_unavailable", {{"error", e.what()}});
    poll_results_ = {};
    schedule_to_start_ = {};
    waiting_polls_ = {};
    buffered_tasks_ = nullptr;
  }
}

void MatchingMetrics::RecordPollResult(keys::TaskKind kind, PollResult result) {
  prometheus::Counter* counter = poll_results_[KindIndex(kind)][static_cast<int>(result)];
  if (counter != nullptr) counter->Increment();
}

void MatchingMetrics::RecordScheduleToStart(keys::TaskKind kind, absl::Duration latency) {
  prometheus::Histogram* histogram = schedule_to_start_[KindIndex(kind)];
  // A clock step backwards must not record a negative latency.
  if (histogram != nullptr) {
    histogram->Observe(absl::ToDoubleSeconds(std::max(latency, absl::ZeroDuration())));
  }
}

void MatchingMetrics::AddWaitingPolls(keys::TaskKind kind, int64_t delta) {
  Move(waiting_polls_[KindIndex(kind)], delta);
}

void MatchingMetrics::AddBufferedTasks(int64_t delta) { Move(buffered_tasks_, delta); }

}  // namespace kiln::orchestrator::matching_internal
