// The engine over real gRPC on 127.0.0.1 with a real RocksDB directory: a test worker drives
// workflows with activities, retries, timers and timeouts to completion, and the orchestrator
// comes back after a restart with every open workflow, pending task and timer.
#include <cmath>
#include <functional>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using testutil::OrchestratorProcess;
using testutil::StartWorkflow;
using testutil::TestWorker;
using testutil::WaitForClose;

std::string Result(const api::HistoryEvent& close) {
  return close.workflow_execution_completed_event_attributes().result().payloads(0).data();
}

TEST_CASE("Workflows with activities, retries and timers run to completion over gRPC") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  TestWorker worker(orchestrator.connection().channel(), "q");
  worker.Start();

  std::string steps = StartWorkflow(stub, "steps-1", "steps", "q", "3").value();
  std::string flaky = StartWorkflow(stub, "flaky-1", "flaky", "q", "x").value();
  std::string timer = StartWorkflow(stub, "timer-1", "timer", "q", "1").value();

  auto steps_close = WaitForClose(stub, "steps-1", steps, absl::Seconds(30));
  REQUIRE(steps_close.ok());
  REQUIRE(steps_close->event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  REQUIRE(Result(*steps_close) == "step-2@1");

  auto flaky_close = WaitForClose(stub, "flaky-1", flaky, absl::Seconds(30));
  REQUIRE(flaky_close.ok());
  REQUIRE(Result(*flaky_close) == "x@2");  // failed once, retried, succeeded on attempt 2

  absl::Time before = absl::Now();
  auto timer_close = WaitForClose(stub, "timer-1", timer, absl::Seconds(30));
  REQUIRE(timer_close.ok());
  REQUIRE(Result(*timer_close) == "slept");
  (void)before;

  // History of the three-step workflow: gapless, Temporal's shape.
  auto history = testutil::GetHistory(stub, "steps-1", steps).value();
  REQUIRE(history.events_size() == 4 + 3 * 6 + 1);  // start, then 6 events a step, close
  for (int i = 0; i < history.events_size(); ++i) REQUIRE(history.events(i).event_id() == i + 1);

  // Describe and list.
  grpc::ClientContext ctx;
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_workflow_id("flaky-1");
  api::DescribeWorkflowExecutionResponse described;
  REQUIRE(stub.DescribeWorkflowExecution(&ctx, describe, &described).ok());
  REQUIRE(described.workflow_execution_info().status() == api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  grpc::ClientContext list_ctx;
  api::ListWorkflowExecutionsRequest list;
  list.set_status(api::WORKFLOW_EXECUTION_STATUS_COMPLETED);
  api::ListWorkflowExecutionsResponse listed;
  REQUIRE(stub.ListWorkflowExecutions(&list_ctx, list, &listed).ok());
  REQUIRE(listed.executions_size() == 3);
  REQUIRE(worker.errors() == 0);

  // The metrics endpoint shows the engine's work.
  auto metrics = testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics").value();
  REQUIRE(
      metrics.find("kiln_rpc_requests_total{code=\"OK\",method=\"StartWorkflowExecution\"} 3") !=
      std::string::npos);
  worker.Stop();
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("Bad requests get clear errors") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  auto missing_queue = StartWorkflow(stub, "w", "steps", "", "1");
  REQUIRE(missing_queue.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(std::string(missing_queue.status().message()) == "task_queue.name: must be set");
  auto long_id = StartWorkflow(stub, std::string(2000, 'x'), "steps", "q", "1");
  REQUIRE(std::string(long_id.status().message()).find("over the limit of 1000") !=
          std::string::npos);
  REQUIRE(StartWorkflow(stub, "dup", "steps", "q", "1").ok());
  api::StartWorkflowExecutionRequest again;
  again.set_workflow_id("dup");
  again.mutable_workflow_type()->set_name("steps");
  again.mutable_task_queue()->set_name("q");
  grpc::ClientContext ctx;
  api::StartWorkflowExecutionResponse response;
  grpc::Status dup = stub.StartWorkflowExecution(&ctx, again, &response);
  REQUIRE(dup.error_code() == grpc::StatusCode::ALREADY_EXISTS);

  // A garbage task token is refused.
  grpc::ClientContext ctx2;
  api::RespondActivityTaskCompletedRequest bogus;
  bogus.set_task_token("nonsense");
  api::RespondActivityTaskCompletedResponse ignored;
  REQUIRE(stub.RespondActivityTaskCompleted(&ctx2, bogus, &ignored).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);

  // Worker instance ids are bounded like identities (the run state keeps the sticky one).
  grpc::ClientContext ctx3;
  api::PollWorkflowTaskQueueRequest poll;
  poll.mutable_task_queue()->set_name("q");
  poll.set_worker_instance_id(std::string(2000, 'i'));
  api::PollWorkflowTaskQueueResponse polled;
  grpc::Status long_instance = stub.PollWorkflowTaskQueue(&ctx3, poll, &polled);
  REQUIRE(long_instance.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE(long_instance.error_message().find("worker_instance_id: 2000 bytes is over the limit") !=
          std::string::npos);
  grpc::ClientContext ctx4;
  api::RespondWorkflowTaskCompletedRequest completed;
  completed.set_task_token("nonsense");
  completed.set_sticky_worker(std::string(2000, 'i'));
  api::RespondWorkflowTaskCompletedResponse completed_response;
  grpc::Status long_sticky =
      stub.RespondWorkflowTaskCompleted(&ctx4, completed, &completed_response);
  REQUIRE(long_sticky.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE(long_sticky.error_message().find("sticky_worker: 2000 bytes") != std::string::npos);
}

TEST_CASE("Every string and blob a request carries is bounded and every enum checked") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  REQUIRE(StartWorkflow(stub, "target", "timer", "q", "3600").ok());
  const std::string big(1 << 20, 'x');  // 1 MiB
  api::Payload big_payload;
  big_payload.set_data(std::string(64 << 10, 'm'));

  auto start = [](const std::string& id) {
    api::StartWorkflowExecutionRequest request;
    request.set_workflow_id(id);
    request.mutable_workflow_type()->set_name("steps");
    request.mutable_task_queue()->set_name("q");
    return request;
  };
  auto signal = [] {
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id("target");
    request.set_signal_name("s");
    return request;
  };
  struct Case {
    const char* what;
    std::function<grpc::Status(grpc::ClientContext*)> call;
    const char* message;  // a part of the expected INVALID_ARGUMENT message
  };
  const std::vector<Case> cases = {
      {"signal request id",
       [&](grpc::ClientContext* ctx) {
         auto request = signal();
         request.set_request_id(big);
         api::SignalWorkflowExecutionResponse response;
         return stub.SignalWorkflowExecution(ctx, request, &response);
       },
       "request_id: 1048576 bytes is over the limit of 1000"},
      {"signal name",
       [&](grpc::ClientContext* ctx) {
         auto request = signal();
         request.set_signal_name(big);
         api::SignalWorkflowExecutionResponse response;
         return stub.SignalWorkflowExecution(ctx, request, &response);
       },
       "signal_name: 1048576 bytes"},
      {"signal identity",
       [&](grpc::ClientContext* ctx) {
         auto request = signal();
         request.set_identity(big);
         api::SignalWorkflowExecutionResponse response;
         return stub.SignalWorkflowExecution(ctx, request, &response);
       },
       "identity: 1048576 bytes"},
      {"memo",
       [&](grpc::ClientContext* ctx) {
         auto request = start("memo");
         (*request.mutable_memo()->mutable_fields())["m"] = big_payload;
         api::StartWorkflowExecutionResponse response;
         return stub.StartWorkflowExecution(ctx, request, &response);
       },
       "memo: "},
      {"header",
       [&](grpc::ClientContext* ctx) {
         auto request = signal();
         (*request.mutable_header()->mutable_fields())["h"] = big_payload;
         api::SignalWorkflowExecutionResponse response;
         return stub.SignalWorkflowExecution(ctx, request, &response);
       },
       "header: "},
      {"terminate reason",
       [&](grpc::ClientContext* ctx) {
         api::TerminateWorkflowExecutionRequest request;
         request.mutable_workflow_execution()->set_workflow_id("target");
         request.set_reason(big);
         api::TerminateWorkflowExecutionResponse response;
         return stub.TerminateWorkflowExecution(ctx, request, &response);
       },
       "reason: 1048576 bytes"},
      {"cancel reason",
       [&](grpc::ClientContext* ctx) {
         api::RequestCancelWorkflowExecutionRequest request;
         request.mutable_workflow_execution()->set_workflow_id("target");
         request.set_reason(big);
         api::RequestCancelWorkflowExecutionResponse response;
         return stub.RequestCancelWorkflowExecution(ctx, request, &response);
       },
       "reason: 1048576 bytes"},
      {"list query",
       [&](grpc::ClientContext* ctx) {
         api::ListWorkflowExecutionsRequest request;
         request.set_query(big);
         api::ListWorkflowExecutionsResponse response;
         return stub.ListWorkflowExecutions(ctx, request, &response);
       },
       "query: 1048576 bytes"},
      {"unknown reuse policy",
       [&](grpc::ClientContext* ctx) {
         auto request = start("enum");
         request.set_workflow_id_reuse_policy(static_cast<api::WorkflowIdReusePolicy>(99));
         api::StartWorkflowExecutionResponse response;
         return stub.StartWorkflowExecution(ctx, request, &response);
       },
       "workflow_id_reuse_policy: unknown value 99"},
      {"NaN backoff",
       [&](grpc::ClientContext* ctx) {
         auto request = start("nan");
         request.mutable_retry_policy()->set_backoff_coefficient(std::nan(""));
         api::StartWorkflowExecutionResponse response;
         return stub.StartWorkflowExecution(ctx, request, &response);
       },
       "backoff_coefficient must be between 1 and"},
      {"negative retry interval",
       [&](grpc::ClientContext* ctx) {
         auto request = start("negative");
         request.mutable_retry_policy()->mutable_initial_interval()->set_seconds(-5);
         api::StartWorkflowExecutionResponse response;
         return stub.StartWorkflowExecution(ctx, request, &response);
       },
       "intervals must not be negative"},
      {"unknown query result type",
       [&](grpc::ClientContext* ctx) {
         api::RespondQueryTaskCompletedRequest request;
         request.set_completed_type(static_cast<api::QueryResultType>(42));
         api::RespondQueryTaskCompletedResponse response;
         return stub.RespondQueryTaskCompleted(ctx, request, &response);
       },
       "completed_type: unknown value 42"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    grpc::ClientContext ctx;
    grpc::Status status = c.call(&ctx);
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(status.error_message(), Catch::Contains(c.message));
  }
  // Nothing of it reached the run: only its start events.
  auto history = testutil::GetHistory(stub, "target", "").value();
  CHECK(history.events_size() == 2);

  // A string that is not UTF-8 cannot be parsed (proto3): the answer says so.
  grpc::ClientContext utf8_ctx;
  api::StartWorkflowExecutionResponse utf8_response;
  grpc::Status utf8 = stub.StartWorkflowExecution(&utf8_ctx, start("bad\xff\xfe"), &utf8_response);
  INFO(utf8.error_code() << " " << utf8.error_message());
  CHECK(utf8.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE(orchestrator.connection().CheckHealth(absl::Seconds(10)).ok());
}

TEST_CASE("An empty long poll answers at its deadline with no task") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1500));
  api::PollActivityTaskQueueRequest poll;
  poll.mutable_task_queue()->set_name("empty");
  api::PollActivityTaskQueueResponse response;
  grpc::Status status = stub.PollActivityTaskQueue(&ctx, poll, &response);
  REQUIRE(status.ok());  // answered ~1 s before the caller's deadline, empty
  REQUIRE(response.task_token().empty());
}

TEST_CASE("A restart resumes open workflows, their pending tasks and timers") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  // Started with no worker running: tasks wait in the durable backlog.
  std::string steps = StartWorkflow(stub, "s", "steps", "q", "2").value();
  std::string timer = StartWorkflow(stub, "t", "timer", "q", "2").value();
  {
    // Let the timer workflow start its timer, then stop the worker before it fires.
    TestWorker worker(orchestrator.connection().channel(), "q", 1, 0);
    worker.Start();
    REQUIRE(testutil::WaitFor([&] { return worker.workflow_tasks() >= 2; }, absl::Seconds(20)));
  }
  REQUIRE(orchestrator.Stop().value() == 0);
  REQUIRE(orchestrator.Start().ok());
  TestWorker worker(orchestrator.connection().channel(), "q");
  worker.Start();
  auto steps_close = WaitForClose(stub, "s", steps, absl::Seconds(30));
  REQUIRE(steps_close.ok());
  REQUIRE(Result(*steps_close) == "step-1@1");
  auto timer_close = WaitForClose(stub, "t", timer, absl::Seconds(30));
  REQUIRE(timer_close.ok());
  REQUIRE(Result(*timer_close) == "slept");
}

TEST_CASE("History long polls cancelled by their callers in numbers leave the server sound") {
  // Regression: a waiting history read whose caller gave up used to touch the call's freed
  // request from the executor (found by the engine benchmark, a crash under load).
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  std::string run = StartWorkflow(stub, "waiting", "timer", "q", "3600").value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1 + i % 20));
        api::GetWorkflowExecutionHistoryRequest request;
        request.mutable_execution()->set_workflow_id("waiting");
        request.set_wait_new_event(true);
        request.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
        api::GetWorkflowExecutionHistoryResponse response;
        (void)stub.GetWorkflowExecutionHistory(&ctx, request, &response);  // deadline: expected
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(orchestrator.connection().CheckHealth(absl::Seconds(10)).ok());
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("SIGTERM answers clients waiting for a result at once instead of at the drain") {
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  REQUIRE(StartWorkflow(stub, "waited-on", "timer", "q", "3600").ok());

  // Two clients waiting for the result (`kiln workflow result`, GetResult).
  struct Waiter {
    grpc::Status status;
    api::GetWorkflowExecutionHistoryResponse response;
  };
  std::vector<Waiter> waiters(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      api::GetWorkflowExecutionHistoryRequest request;
      request.mutable_execution()->set_workflow_id("waited-on");
      request.set_wait_new_event(true);
      request.set_history_event_filter_type(api::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
      waiters[i].status = stub.GetWorkflowExecutionHistory(&ctx, request, &waiters[i].response);
    });
  }
  // Both are parked on the run (the gauge counts them), not on their way.
  auto waiting = [&] {
    auto metrics = testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics");
    return metrics.ok() && metrics->find("kiln_history_waits 2\n") != std::string::npos;
  };
  REQUIRE(testutil::WaitFor(waiting, absl::Seconds(20)));

  REQUIRE(orchestrator.Stop().value() == 0);
  for (auto& t : threads) t.join();
  // Answered with an empty page (ask again), not cut off by the drain's end.
  for (const Waiter& w : waiters) {
    INFO(w.status.error_message());
    REQUIRE(w.status.ok());
    REQUIRE(w.response.history().events_size() == 0);
  }
}

TEST_CASE("SIGTERM stops the orchestrator at once when its clients' connections are idle") {
  // An idle client reads the server's GOAWAY only when its channel's backup poller runs (every
  // 5 s); the orchestrator's stop waits for the calls in flight (common/server_calls.h), not
  // for that, nor for its 5 s grace; and its metrics listener (civetweb) stops at once too
  // (common/civetweb_stop.h) instead of at its 2 s poll.
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  REQUIRE(StartWorkflow(stub, "idle-client", "timer", "q", "3600").ok());
  const absl::Time began = absl::Now();
  REQUIRE(orchestrator.Stop().value() == 0);
  CHECK(absl::Now() - began < absl::Seconds(2));
}

namespace start_at_schedule {

api::PollWorkflowTaskQueueResponse PollWorkflowTask(api::WorkflowService::Stub& stub,
                                                    const std::string& queue,
                                                    const std::string& identity,
                                                    absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  api::PollWorkflowTaskQueueRequest poll;
  poll.mutable_task_queue()->set_name(queue);
  poll.set_identity(identity);
  api::PollWorkflowTaskQueueResponse response;
  grpc::Status status = stub.PollWorkflowTaskQueue(&ctx, poll, &response);
  CHECK(status.ok());
  return response;
}

bool PollerListed(api::WorkflowService::Stub& stub, const std::string& queue,
                  const std::string& identity) {
  grpc::ClientContext ctx;
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name(queue);
  api::DescribeTaskQueueResponse response;
  if (!stub.DescribeTaskQueue(&ctx, request, &response).ok()) return false;
  for (const auto& poller : response.pollers()) {
    if (poller.identity() == identity) return true;
  }
  return false;
}

}  // namespace start_at_schedule

TEST_CASE("A task created while a poller waits is started in the same synced transition") {
  using start_at_schedule::PollerListed;
  using start_at_schedule::PollWorkflowTask;
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();

  // Events written by one transition share its task id.
  auto same_transition = [](const api::History& history, int a, int b) {
    return history.events(a - 1).task_id() == history.events(b - 1).task_id();
  };

  {  // A poller waiting: scheduled and started in the start's own transition.
    // A first, short poll reads the (empty) backlog, so the next poll waits at once.
    (void)PollWorkflowTask(stub, "sas", "warm-up", absl::Milliseconds(1200));
    api::PollWorkflowTaskQueueResponse task;
    std::thread poller([&] { task = PollWorkflowTask(stub, "sas", "waiting", absl::Seconds(30)); });
    REQUIRE(
        testutil::WaitFor([&] { return PollerListed(stub, "sas", "waiting"); }, absl::Seconds(10)));
    std::string run = StartWorkflow(stub, "sas-1", "steps", "sas", "1").value();
    poller.join();
    REQUIRE_FALSE(task.task_token().empty());
    REQUIRE(task.workflow_execution().run_id() == run);
    REQUIRE(task.history().events_size() == 3);
    CHECK(task.history().events(1).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
    CHECK(task.history().events(2).event_type() == api::EVENT_TYPE_WORKFLOW_TASK_STARTED);
    CHECK(task.history().events(2).workflow_task_started_event_attributes().identity() ==
          "waiting");
    CHECK(same_transition(task.history(), 1, 3));
    CHECK(task.started_event_id() == 3);
    // The stored history agrees, and the task completes like any other.
    auto stored = testutil::GetHistory(stub, "sas-1", run).value();
    REQUIRE(stored.events_size() == 3);
    CHECK(same_transition(stored, 1, 3));
    grpc::ClientContext ctx;
    api::RespondWorkflowTaskCompletedRequest done;
    done.set_task_token(task.task_token());
    auto* complete = done.add_commands();
    complete->set_command_type(api::COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION);
    complete->mutable_complete_workflow_execution_command_attributes()->mutable_result();
    api::RespondWorkflowTaskCompletedResponse ignored;
    REQUIRE(stub.RespondWorkflowTaskCompleted(&ctx, done, &ignored).ok());
    auto close = WaitForClose(stub, "sas-1", run, absl::Seconds(10));
    REQUIRE(close.ok());
    CHECK(close->event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  }

  {  // Nobody waiting: the task waits in the backlog and starts in its own transition.
    std::string run = StartWorkflow(stub, "sas-2", "steps", "later", "1").value();
    api::PollWorkflowTaskQueueResponse task =
        PollWorkflowTask(stub, "later", "late", absl::Seconds(10));
    REQUIRE(task.history().events_size() == 3);
    CHECK(same_transition(task.history(), 1, 2));
    CHECK_FALSE(same_transition(task.history(), 2, 3));
  }
  REQUIRE(orchestrator.Stop().value() == 0);
}

}  // namespace
}  // namespace kiln
