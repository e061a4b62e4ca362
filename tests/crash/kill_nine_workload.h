// Crash safety: many workflows run while the orchestrator is killed with SIGKILL (twice) and
// restarted on the same store. Every workflow must complete exactly once, and every history
// must be gapless (event ids 1..N) with each transition recorded once. Shared by the test on
// RocksDB (crash_test.cc) and the one on PostgreSQL (postgres_crash_test.cc). The workers are
// the raw polling TestWorker, or the SDK's workers on the push stream (WorkerStream).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "sdk/activity_worker.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/test_worker.h"

namespace kiln {

enum class KillNineWorkers {
  kRawPolls,   // testutil::TestWorker: polls and unary answers
  kSdkStream,  // the SDK's workflow and activity workers, on the push stream
};

// The SDK's twin of TestWorker's "steps": input N (raw text), activity "echo" N times in
// sequence (each retried soon after a lost attempt), the last result as the workflow's.
inline sdk::Task<absl::StatusOr<kiln::api::v1::Payloads>> SdkSteps(sdk::WorkflowContext& ctx,
                                                                   kiln::api::v1::Payloads input) {
  int steps = 1;
  if (input.payloads_size() == 0 || !absl::SimpleAtoi(input.payloads(0).data(), &steps)) {
    steps = 1;
  }
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  ToProto(absl::Milliseconds(100), options.retry_policy.mutable_initial_interval());
  kiln::api::v1::Payloads value = input;
  for (int i = 0; i < steps; ++i) {
    auto next = co_await ctx.ExecuteActivity("echo", value, options);
    if (!next.ok()) co_return next.status();
    value = *next;
  }
  co_return value;
}

// The SDK's workers of queue "q" (separate connections: nothing process-local between them).
struct SdkStreamWorkers {
  explicit SdkStreamWorkers(testutil::OrchestratorProcess& orchestrator)
      : workflow_connection(orchestrator.address(), {.token = orchestrator.admin_token()}),
        activity_connection(orchestrator.address(), {.token = orchestrator.admin_token()}),
        activities(activity_connection, "q", {.identity = "stream-activities", .pollers = 4}),
        workflows(workflow_connection, "q", {.identity = "stream-workflows", .pollers = 4}) {
    REQUIRE(activities
                .Register("echo",
                          [this](sdk::ActivityContext&, const kiln::api::v1::Payloads& in)
                              -> absl::StatusOr<kiln::api::v1::Payloads> {
                            ++done;
                            return in;
                          })
                .ok());
    REQUIRE(activities.Start().ok());
    workflows.Register("steps", SdkSteps);
    workflows.Start();
  }
  void Stop() {
    workflows.Stop();
    activities.Stop();
  }
  std::atomic<int64_t> done{0};
  sdk::Connection workflow_connection;
  sdk::Connection activity_connection;
  sdk::ActivityWorker activities;
  sdk::WorkflowWorker workflows;
};

// Runs the workload on an orchestrator started with `extra_args` (its store, for one).
inline void RunKillNineWorkload(const std::vector<std::string>& extra_args,
                                KillNineWorkers kind = KillNineWorkers::kRawPolls) {
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
  std::unique_ptr<testutil::TestWorker> raw;
  std::unique_ptr<SdkStreamWorkers> streamed;
  if (kind == KillNineWorkers::kRawPolls) {
    raw = std::make_unique<testutil::TestWorker>(orchestrator.connection().channel(), "q", 4, 4);
    raw->Start();
  } else {
    streamed = std::make_unique<SdkStreamWorkers>(orchestrator);
  }
  auto activities_done = [&]() -> int64_t {
    return raw != nullptr ? raw->activity_tasks() : streamed->done.load();
  };
  for (int64_t kill_after : {kWorkflows * kSteps / 3, 2 * kWorkflows * kSteps / 3}) {
    REQUIRE(testutil::WaitFor([&] { return activities_done() >= kill_after; }, absl::Seconds(120)));
    orchestrator.Kill();
    INFO("activity tasks done when killed: " << activities_done());
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
  if (raw != nullptr) raw->Stop();
  if (streamed != nullptr) {
    streamed->Stop();
    // The last orchestrator pushed every task it started: no poll reached it.
    absl::StatusOr<std::string> metrics =
        testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics");
    REQUIRE(metrics.ok());
    CHECK(metrics->find("method=\"PollWorkflowTaskQueue\"") == std::string::npos);
    CHECK(metrics->find("method=\"PollActivityTaskQueue\"") == std::string::npos);
    CHECK(metrics->find("method=\"WorkerStream.RespondActivityTaskCompleted\"") !=
          std::string::npos);
  }

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
