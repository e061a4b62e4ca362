// A start that waits for its run to close (StartWorkflowExecution with wait_for_close, the
// SDK's Client::Execute) against a real orchestrator: the result comes with the start's answer
// and no history long poll follows; a run that outlasts the wait, a result too large to come
// with the start, and an orchestrator killed while the caller waits. The workers are in this
// process but on connections of their own, with no eager start: every step crosses the
// orchestrator, as in the decoupled shape.
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using api::Payloads;

constexpr char kQueue[] = "waited";

absl::StatusOr<Payloads> Echo(sdk::ActivityContext&, const Payloads& in) { return in; }

sdk::Task<absl::StatusOr<Payloads>> OneActivity(sdk::WorkflowContext& ctx, Payloads input) {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  co_return co_await ctx.ExecuteActivity("Echo", input, options);
}

sdk::Task<absl::StatusOr<Payloads>> Fails(sdk::WorkflowContext&, Payloads) {
  co_return absl::InvalidArgumentError("refused on purpose");
}

// Completes with the input of the signal "go".
sdk::Task<absl::StatusOr<Payloads>> Gate(sdk::WorkflowContext& ctx, Payloads) {
  co_return co_await ctx.GetSignalChannel("go").Receive();
}

// Completes with 1.5 MB: above what a start's answer carries (kMaxWaitedCloseEventBytes).
sdk::Task<absl::StatusOr<Payloads>> Large(sdk::WorkflowContext&, Payloads) {
  co_return sdk::ToPayloads(std::string(1'500'000, 'k'));
}

// An orchestrator, and workers on connections of their own (no process-local fast path).
struct Fixture {
  Fixture() {
    REQUIRE(orchestrator.Start().ok());
    REQUIRE(activities.Register("Echo", Echo).ok());
    REQUIRE(activities.Start().ok());
    workflows.Register("OneActivity", OneActivity);
    workflows.Register("Fails", Fails);
    workflows.Register("Gate", Gate);
    workflows.Register("Large", Large);
    workflows.Start();
  }
  ~Fixture() {
    workflows.Stop();
    activities.Stop();
  }

  grpc::Status Signal(const std::string& workflow_id, const std::string& value) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id(workflow_id);
    request.set_signal_name("go");
    *request.mutable_input() = sdk::ToPayloads(value);
    api::SignalWorkflowExecutionResponse response;
    return orchestrator.connection().workflow_service().SignalWorkflowExecution(&context, request,
                                                                                &response);
  }

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data"};
  sdk::Connection wf_connection{orchestrator.address(), {.token = orchestrator.admin_token()}};
  sdk::Connection act_connection{orchestrator.address(), {.token = orchestrator.admin_token()}};
  sdk::ActivityWorker activities{act_connection, kQueue, {.identity = "act", .pollers = 1}};
  sdk::WorkflowWorker workflows{wf_connection, kQueue, {.identity = "wf", .pollers = 1}};
};

// A raw start of "Gate" that waits up to `wait` for the close.
api::StartWorkflowExecutionRequest GateStart(const std::string& id, const std::string& request_id,
                                             absl::Duration wait) {
  api::StartWorkflowExecutionRequest request;
  request.set_workflow_id(id);
  request.mutable_workflow_type()->set_name("Gate");
  request.mutable_task_queue()->set_name(kQueue);
  request.set_request_id(request_id);
  ToProto(wait, request.mutable_wait_for_close());
  return request;
}

TEST_CASE("A start that waits answers with the result and no history read follows") {
  Fixture f;
  sdk::Client client(f.orchestrator.connection());
  for (int i = 0; i < 20; ++i) {
    auto result = client.Execute<std::string>(
        {.id = absl::StrCat("waited-", i), .task_queue = kQueue}, "OneActivity",
        sdk::ToPayloads(std::string("kiln")), absl::Seconds(30));
    REQUIRE(result.value() == "kiln");
  }
  // A run that fails: the error says how it closed, from the start's answer too.
  auto failed = client.Execute({.id = "waited-fails", .task_queue = kQueue}, "Fails", Payloads(),
                               absl::Seconds(30));
  REQUIRE(absl::IsAborted(failed.status()));
  CHECK(sdk::ClosedStatusOf(failed.status()) == api::WORKFLOW_EXECUTION_STATUS_FAILED);
  CHECK(std::string(failed.status().message()).find("refused on purpose") != std::string::npos);

  CHECK(f.orchestrator.RpcCount("StartWorkflowExecution.WaitForClose").value() == 21);
  CHECK(f.orchestrator.RpcCount("StartWorkflowExecution").value() == 0);
  CHECK(f.orchestrator.RpcCount("GetWorkflowExecutionHistory").value() == 0);
}

TEST_CASE(
    "A run that outlasts the start's wait is answered without its result and waited as usual") {
  Fixture f;
  auto& stub = f.orchestrator.connection().workflow_service();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  api::StartWorkflowExecutionResponse response;
  const absl::Time began = absl::Now();
  REQUIRE(stub.StartWorkflowExecution(
                  &context, GateStart("outlasts", "req-1", absl::Milliseconds(300)), &response)
              .ok());
  // The wait ran to its end: the run is open (nobody signalled it).
  CHECK(absl::Now() - began >= absl::Milliseconds(250));
  CHECK(response.started());
  CHECK_FALSE(response.has_close_event());
  const std::string run_id = response.run_id();

  REQUIRE(f.Signal("outlasts", "opened").ok());
  sdk::Client client(f.orchestrator.connection());
  CHECK(client.GetResult<std::string>({"outlasts", run_id}, absl::Seconds(30)).value() == "opened");

  // The same start retried once the run has closed: the same run, its close event at once.
  grpc::ClientContext again;
  again.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  api::StartWorkflowExecutionResponse retried;
  REQUIRE(stub.StartWorkflowExecution(&again, GateStart("outlasts", "req-1", absl::Seconds(20)),
                                      &retried)
              .ok());
  CHECK(retried.run_id() == run_id);
  CHECK_FALSE(retried.started());
  REQUIRE(retried.has_close_event());
  CHECK(retried.close_event().event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  CHECK(f.orchestrator.RpcCount("StartWorkflowExecution.WaitForClose").value() == 2);
}

TEST_CASE("A result too large for the start's answer comes by the history read") {
  Fixture f;
  sdk::Client client(f.orchestrator.connection());
  auto result = client.Execute<std::string>({.id = "large", .task_queue = kQueue}, "Large",
                                            Payloads(), absl::Seconds(30));
  REQUIRE(result.ok());
  CHECK(result->size() == 1'500'000);
  CHECK(f.orchestrator.RpcCount("StartWorkflowExecution.WaitForClose").value() == 1);
  CHECK(f.orchestrator.RpcCount("GetWorkflowExecutionHistory").value() == 1);
}

TEST_CASE(
    "A caller waiting on a start gets the same run's result across a kill -9 of the orchestrator") {
  Fixture f;
  // Enough retries to span the restart (the backoff doubles from 100 ms).
  sdk::Client client(f.orchestrator.connection(), {.rpc = {.max_attempts = 10}});
  absl::StatusOr<std::string> result = absl::UnknownError("not yet");
  std::thread caller([&] {
    result = client.Execute<std::string>(
        {.id = "survives", .task_queue = kQueue, .request_id = "survives-request"}, "Gate",
        Payloads(), absl::Seconds(60));
  });
  // The run exists: the caller's start is committed and it waits for the close.
  sdk::Client observer(f.orchestrator.connection());
  std::string run_id;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (run_id.empty() && absl::Now() < deadline) {
    auto described = observer.Describe({"survives", ""});
    if (described.ok()) run_id = described->workflow_execution_info().execution().run_id();
  }
  REQUIRE_FALSE(run_id.empty());

  f.orchestrator.Kill();
  REQUIRE(f.orchestrator.Start().ok());
  REQUIRE(f.Signal("survives", "after the restart").ok());
  caller.join();
  REQUIRE(result.value() == "after the restart");
  // One run: the retried start found it by its request id and waited for it again.
  auto described = observer.Describe({"survives", ""});
  REQUIRE(described.ok());
  CHECK(described->workflow_execution_info().execution().run_id() == run_id);
  // The retry waited at the restarted orchestrator. (Its history reads are not counted here: the
  // workflow worker may read the run's history to replay it after the restart.)
  CHECK(f.orchestrator.RpcCount("StartWorkflowExecution.WaitForClose").value() >= 1);
}

}  // namespace
}  // namespace kiln
