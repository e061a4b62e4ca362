// A deterministic harness around HistoryEngine for state-machine tests: an in-memory store, a
// fake clock and seeded ids. With KILN_TEST_STORE=postgres (the ctest label `postgres`) the
// store is a PostgresStore on a database of its own instead (tests/testutil/postgres.h), so the
// same suites check the engine on PostgreSQL. It plays matching and the timer queue itself — tasks
// are taken from the store's backlog, timers are fired when the fake clock passes them — so every
// step of a test happens exactly when the test says.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/ids.h"
#include "orchestrator/history/history_engine.h"
#include "orchestrator/persistence/store.h"

namespace kiln::orchestrator::testing {

class EngineHarness : public EngineListener {
 public:
  EngineHarness();

  HistoryEngine& engine() { return *engine_; }
  FakeClock& clock() { return clock_; }
  Store& store() { return *store_; }

  void TaskAdded(QueuedTask task) override { added_tasks_.push_back(std::move(task)); }
  void TimerAdded(Table, const std::string&, absl::Time) override {}
  void RunChanged(const std::string&, bool, const kiln::api::v1::HistoryEvent*) override {}

  // Starts a workflow on queue "q" with the given id.
  absl::StatusOr<std::string> Start(const std::string& workflow_id,
                                    api::StartWorkflowExecutionRequest extra = {});
  // Every backlog task of a queue, in task-id order.
  std::vector<QueuedTask> Backlog(keys::TaskKind kind, const std::string& queue);
  // Takes the first backlog task of the queue and records its start, dropping stale ones as
  // the frontend would. nullopt when the backlog holds no live task.
  std::optional<api::PollWorkflowTaskQueueResponse> PollWorkflowTask(
      const std::string& queue = "q");
  std::optional<api::PollActivityTaskQueueResponse> PollActivityTask(
      const std::string& queue = "q");
  // Advances the fake clock and fires every timer due by then, in fire order.
  void Advance(absl::Duration d);
  // Commands.
  static api::Command ScheduleActivity(const std::string& id, const std::string& type,
                                       absl::Duration start_to_close, api::RetryPolicy retry = {});
  static api::Command StartTimer(const std::string& id, absl::Duration after);
  static api::Command CompleteWorkflow(const std::string& result);
  absl::Status Complete(const api::PollWorkflowTaskQueueResponse& task,
                        std::vector<api::Command> commands);
  api::History History(const std::string& run_id);
  std::vector<api::EventType> EventTypes(const std::string& run_id);
  api::DescribeWorkflowExecutionResponse Describe(const std::string& run_id);

 private:
  FakeClock clock_;
  RandomIdGenerator ids_{7};
  std::unique_ptr<Store> store_;
  std::vector<QueuedTask> added_tasks_;
  std::unique_ptr<HistoryEngine> engine_;
};

api::Payloads Text(const std::string& s);

// Plays the timer queue: fires the timers of `store` (both tables) due by `target`, in fire
// order, moving `clock` to each (at most `max_fires`), then moves it to `target`. The first
// failed firing stops it and is returned; its timer stays for a later call.
absl::Status FireDueTimers(Store& store, HistoryEngine& engine, FakeClock& clock, absl::Time target,
                           int max_fires = 1'000'000);

}  // namespace kiln::orchestrator::testing
