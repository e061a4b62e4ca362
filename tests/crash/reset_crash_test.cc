// Crash safety of reset: many runs are reset while the orchestrator is killed with SIGKILL and
// restarted on the same data directory; every reset is then retried with its request id. Each
// workflow must end with exactly one new run (the retry answers with it), the old run
// terminated naming it, the new run current, both histories gapless, and the new run going on.
#include <atomic>
#include <map>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;

grpc::Status Reset(api::WorkflowService::Stub& stub, const std::string& workflow_id,
                   const std::string& run_id, std::string* new_run_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  api::ResetWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(workflow_id);
  request.mutable_workflow_execution()->set_run_id(run_id);
  request.set_reset_point(api::RESET_POINT_FIRST_WORKFLOW_TASK);
  request.set_reason("crash");
  request.set_request_id("reset-" + workflow_id);
  api::ResetWorkflowExecutionResponse response;
  grpc::Status status = stub.ResetWorkflowExecution(&ctx, request, &response);
  *new_run_id = response.run_id();
  return status;
}

void Signal(api::WorkflowService::Stub& stub, const std::string& workflow_id,
            const std::string& name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  api::SignalWorkflowExecutionRequest request;
  request.mutable_workflow_execution()->set_workflow_id(workflow_id);
  request.set_signal_name(name);
  request.set_request_id(absl::StrCat(workflow_id, "/", name));
  api::SignalWorkflowExecutionResponse response;
  REQUIRE(stub.SignalWorkflowExecution(&ctx, request, &response).ok());
}

int CountEvents(const api::History& history, api::EventType type) {
  int n = 0;
  for (const auto& e : history.events()) n += e.event_type() == type;
  return n;
}

TEST_CASE("kill -9 around resets leaves each workflow exactly one new run") {
  constexpr int kWorkflows = 100;
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();

  // Runs that took their first task (a long timer) and then two signals.
  std::map<std::string, std::string> old_runs;
  for (int i = 0; i < kWorkflows; ++i) {
    std::string id = absl::StrCat("reset-crash-", i);
    old_runs[id] = testutil::StartWorkflow(stub, id, "timer", "q", "3600").value();
  }
  testutil::TestWorker worker(orchestrator.connection().channel(), "q", 4, 1);
  worker.Start();
  REQUIRE(
      testutil::WaitFor([&] { return worker.workflow_tasks() >= kWorkflows; }, absl::Seconds(120)));
  for (const auto& [id, run] : old_runs) {
    Signal(stub, id, "s1");
    Signal(stub, id, "s2");
  }

  // Resets from another thread; the orchestrator is killed part way through.
  std::atomic<int> attempted{0};
  std::map<std::string, std::string> acknowledged;  // written by the thread, read after join
  std::thread resetter([&] {
    for (const auto& [id, run] : old_runs) {
      std::string new_run;
      if (Reset(stub, id, run, &new_run).ok()) acknowledged[id] = new_run;
      ++attempted;
    }
  });
  REQUIRE(testutil::WaitFor([&] { return attempted.load() >= kWorkflows / 3; }, absl::Seconds(60)));
  orchestrator.Kill();
  resetter.join();
  INFO("resets acknowledged before the kill: " << acknowledged.size());
  absl::Status restarted = orchestrator.Start();
  INFO(restarted.ToString());
  REQUIRE(restarted.ok());
  auto& again = orchestrator.connection().workflow_service();

  // Every reset retried: the ones that were done answer with their run.
  std::map<std::string, std::string> new_runs;
  for (const auto& [id, run] : old_runs) {
    INFO(id);
    std::string new_run;
    grpc::Status status;
    REQUIRE(testutil::WaitFor(
        [&] {
          status = Reset(again, id, run, &new_run);
          return status.error_code() != grpc::StatusCode::UNAVAILABLE;
        },
        absl::Seconds(30)));
    INFO(status.error_message());
    REQUIRE(status.ok());
    if (auto it = acknowledged.find(id); it != acknowledged.end()) REQUIRE(new_run == it->second);
    new_runs[id] = new_run;
  }

  for (const auto& [id, old_run] : old_runs) {
    INFO(id);
    const std::string& new_run = new_runs[id];
    // Exactly two runs of the workflow id: the old and the new.
    grpc::ClientContext ctx;
    api::ListWorkflowExecutionsRequest list;
    list.set_workflow_id(id);
    api::ListWorkflowExecutionsResponse listed;
    REQUIRE(again.ListWorkflowExecutions(&ctx, list, &listed).ok());
    REQUIRE(listed.executions_size() == 2);

    api::History old_history = testutil::GetHistory(again, id, old_run).value();
    for (int i = 0; i < old_history.events_size(); ++i) {
      REQUIRE(old_history.events(i).event_id() == i + 1);
    }
    const auto& last = old_history.events(old_history.events_size() - 1);
    REQUIRE(last.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
    REQUIRE(last.workflow_execution_terminated_event_attributes().reason() ==
            absl::StrCat("reset to run ", new_run, ": crash"));
    REQUIRE(CountEvents(old_history, api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED) == 1);

    api::History new_history = testutil::GetHistory(again, id, new_run).value();
    for (int i = 0; i < new_history.events_size(); ++i) {
      REQUIRE(new_history.events(i).event_id() == i + 1);
    }
    REQUIRE(new_history.events(3).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_FAILED);
    REQUIRE(new_history.events(3).workflow_task_failed_event_attributes().cause() ==
            api::WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW);
    REQUIRE(CountEvents(new_history, api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 2);

    grpc::ClientContext describe_ctx;
    api::DescribeWorkflowExecutionRequest describe;
    describe.mutable_execution()->set_workflow_id(id);
    api::DescribeWorkflowExecutionResponse described;
    REQUIRE(again.DescribeWorkflowExecution(&describe_ctx, describe, &described).ok());
    REQUIRE(described.workflow_execution_info().execution().run_id() == new_run);
  }

  // The new runs go on: each takes its task and starts its timer again.
  for (const auto& [id, new_run] : new_runs) {
    INFO(id);
    REQUIRE(testutil::WaitFor(
        [&] {
          auto history = testutil::GetHistory(again, id, new_run);
          return history.ok() && CountEvents(*history, api::EVENT_TYPE_TIMER_STARTED) == 1;
        },
        absl::Seconds(60)));
  }
  worker.Stop();
}

}  // namespace
}  // namespace kiln
