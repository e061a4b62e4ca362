// Crash safety: many workflows run while the orchestrator is killed with SIGKILL (twice) and
// restarted on the same store. Every workflow must complete exactly once, and every history
// must be gapless (event ids 1..N) with each transition recorded once. Shared by the test on
// RocksDB (crash_test.cc) and the one on PostgreSQL (postgres_crash_test.cc).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/test_worker.h"

namespace kiln {

// Runs the workload on an orchestrator started with `extra_args` (its store, for one).
inline void RunKillNineWorkload(const std::vector<std::string>& extra_args) {
  namespace api = ::kiln::api::v1;
  constexpr int kWorkflows = 200;
  constexpr int kSteps = 3;
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data", extra_args);
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();

  std::map<std::string, std::string> runs;
  for (int i = 0; i < kWorkflows; ++i) {
    std::string id = absl::StrCat("crash-", i);
    runs[id] = testutil::StartWorkflow(stub, id, "steps", "q", std::to_string(kSteps)).value();
  }
  testutil::TestWorker worker(orchestrator.connection().channel(), "q", 4, 4);
  worker.Start();
  for (int64_t kill_after : {kWorkflows * kSteps / 3, 2 * kWorkflows * kSteps / 3}) {
    REQUIRE(testutil::WaitFor([&] { return worker.activity_tasks() >= kill_after; },
                              absl::Seconds(120)));
    orchestrator.Kill();
    INFO("activity tasks done when killed: " << worker.activity_tasks());
    absl::Status restarted = orchestrator.Start();
    INFO(restarted.ToString());
    REQUIRE(restarted.ok());
  }

  for (const auto& [id, run] : runs) {
    INFO(id);
    auto close = testutil::WaitForClose(stub, id, run, absl::Seconds(120));
    REQUIRE(close.ok());
    REQUIRE(close->event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  }
  worker.Stop();

  for (const auto& [id, run] : runs) {
    INFO(id);
    api::History history = testutil::GetHistory(stub, id, run).value();
    std::map<std::string, int> scheduled;
    std::map<int64_t, int> started_for, completed_for;
    int closes = 0;
    for (int i = 0; i < history.events_size(); ++i) {
      const api::HistoryEvent& e = history.events(i);
      REQUIRE(e.event_id() == i + 1);  // gapless
      switch (e.event_type()) {
        case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
          ++scheduled[e.activity_task_scheduled_event_attributes().activity_id()];
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_STARTED:
          ++started_for[e.activity_task_started_event_attributes().scheduled_event_id()];
          break;
        case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
          ++completed_for[e.activity_task_completed_event_attributes().scheduled_event_id()];
          break;
        case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        case api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
          ++closes;
          REQUIRE(i == history.events_size() - 1);  // the close event is the last
          break;
        default:
          break;
      }
    }
    REQUIRE(closes == 1);
    REQUIRE(scheduled.size() == kSteps);
    for (const auto& [activity, count] : scheduled) REQUIRE(count == 1);
    REQUIRE(started_for.size() == kSteps);
    REQUIRE(completed_for.size() == kSteps);
    for (const auto& [event, count] : started_for) REQUIRE(count == 1);
    for (const auto& [event, count] : completed_for) REQUIRE(count == 1);
  }
}

}  // namespace kiln
