// Signals, queries, cancellation with parent close policies, continue-as-new and exclusive
// queues, over real gRPC against a real orchestrator, with the C++ SDK's workers in process.
// GCC 12 reports a false -Wrestrict on inlined std::string copies in this file (GCC bug
// 105329); nothing here overlaps.
#pragma GCC diagnostic ignored "-Wrestrict"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "orchestrator/visibility/search_attributes.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/orchestrator.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using sdk::Task;
using sdk::WorkflowContext;

std::string Text(const api::Payloads& p) {
  return p.payloads_size() ? sdk::FromPayloadAt<std::string>(p, 0).value_or("") : "";
}

// Collects two "push" signals; query "received" returns what it has so far.
Task<absl::StatusOr<api::Payloads>> Collector(WorkflowContext& ctx, api::Payloads input) {
  auto received = std::make_shared<std::string>();
  ctx.SetQueryHandler("received",
                      [received](const api::Payloads&) -> absl::StatusOr<api::Payloads> {
                        return sdk::ToPayloads(*received);
                      });
  auto& pushes = ctx.GetSignalChannel("push");
  for (int i = 0; i < 2; ++i) {
    api::Payloads push = co_await pushes.Receive();
    received->append(Text(push));
  }
  co_return sdk::ToPayloads(*received);
}

// Waits until cancelled (children wait likewise).
Task<absl::StatusOr<api::Payloads>> Waiter(WorkflowContext& ctx, api::Payloads input) {
  co_await ctx.CancellationRequested();
  co_return absl::CancelledError("cancelled as asked");
}

// Starts three waiting children, one per parent close policy, then waits to be cancelled.
Task<absl::StatusOr<api::Payloads>> Parent(WorkflowContext& ctx, api::Payloads input) {
  std::vector<std::pair<std::string, api::ParentClosePolicy>> kids = {
      {"kid-terminate", api::PARENT_CLOSE_POLICY_TERMINATE},
      {"kid-cancel", api::PARENT_CLOSE_POLICY_REQUEST_CANCEL},
      {"kid-abandon", api::PARENT_CLOSE_POLICY_ABANDON}};
  std::vector<sdk::ChildWorkflow> children;
  for (const auto& [id, policy] : kids) {
    sdk::ChildWorkflowOptions options;
    options.workflow_id = id;
    options.parent_close_policy = policy;
    children.push_back(ctx.ExecuteChildWorkflow("Waiter", {}, options));
  }
  for (auto& child : children) {
    auto started = co_await child.started;
    if (!started.ok()) co_return started.status();
  }
  co_await ctx.CancellationRequested();
  co_return absl::CancelledError("parent cancelled");
}

Task<absl::StatusOr<api::Payloads>> Counter(WorkflowContext& ctx, api::Payloads input) {
  int64_t n = sdk::FromPayloadAt<int64_t>(input, 0).value_or(0);
  if (n < 3) co_return ctx.ContinueAsNew(sdk::ToPayloads(n + 1));
  co_return sdk::ToPayloads(absl::StrCat("reached ", n));
}

// Tags itself with a Project search attribute, then waits for a signal.
Task<absl::StatusOr<api::Payloads>> Tagged(WorkflowContext& ctx, api::Payloads input) {
  api::SearchAttributes attributes;
  (*attributes.mutable_indexed_fields())["Project"] = orchestrator::KeywordAttribute("web");
  ctx.UpsertSearchAttributes(attributes);
  co_await ctx.GetSignalChannel("push").Receive();
  co_return sdk::ToPayloads(std::string("done"));
}

struct Fixture {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data", {"--exclusive-lease", "1"}};
  std::unique_ptr<sdk::WorkflowWorker> workflows;
  std::unique_ptr<sdk::Client> client;

  Fixture() {
    REQUIRE(orchestrator.Start().ok());
    sdk::WorkflowWorkerOptions options;
    options.poll_timeout = absl::Seconds(5);
    workflows = std::make_unique<sdk::WorkflowWorker>(orchestrator.connection(), "q", options);
    workflows->Register("Collector", Collector);
    workflows->Register("Waiter", Waiter);
    workflows->Register("Parent", Parent);
    workflows->Register("Counter", Counter);
    workflows->Register("Tagged", Tagged);
    workflows->Start();
    client = std::make_unique<sdk::Client>(orchestrator.connection());
  }
  ~Fixture() { workflows->Stop(); }

  sdk::WorkflowHandle Start(const std::string& id, const std::string& type, api::Payloads input) {
    sdk::StartWorkflowOptions options;
    options.id = id;
    options.task_queue = "q";
    return client->StartWorkflow(options, type, input).value();
  }

  grpc::Status Signal(const std::string& id, const std::string& value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id(id);
    request.set_signal_name("push");
    *request.mutable_input() = sdk::ToPayloads(value);
    api::SignalWorkflowExecutionResponse response;
    return orchestrator.connection().workflow_service().SignalWorkflowExecution(&ctx, request,
                                                                                &response);
  }

  absl::StatusOr<std::string> Query(const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    api::QueryWorkflowRequest request;
    request.mutable_execution()->set_workflow_id(id);
    request.mutable_query()->set_query_type("received");
    api::QueryWorkflowResponse response;
    grpc::Status status =
        orchestrator.connection().workflow_service().QueryWorkflow(&ctx, request, &response);
    if (!status.ok()) return absl::UnknownError(status.error_message());
    return Text(response.query_result());
  }

  api::WorkflowExecutionStatus Status(const std::string& id) {
    auto described = client->Describe({id, ""});
    return described.ok() ? described->workflow_execution_info().status()
                          : api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED;
  }
};

TEST_CASE("Signals and queries over gRPC, including a signal racing the completion") {
  Fixture f;
  auto handle = f.Start("collector", "Collector", {});
  REQUIRE(f.Signal("collector", "a").ok());
  // A query while the workflow waits: answered by a worker replaying the history.
  REQUIRE(testutil::WaitFor([&] { return f.Query("collector").value_or("") == "a"; },
                            absl::Seconds(20)));
  REQUIRE(f.Signal("collector", "b").ok());
  grpc::Status racing = f.Signal("collector", "c");  // may land before or after the close
  REQUIRE((racing.ok() || racing.error_code() == grpc::StatusCode::FAILED_PRECONDITION));
  REQUIRE(Text(f.client->GetResult(handle, absl::Seconds(30)).value()) == "ab");
  api::History history = f.client->GetHistory(handle).value();
  int closes = 0, signals = 0;
  for (const auto& e : history.events()) {
    closes += e.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED;
    signals += e.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED;
  }
  REQUIRE(closes == 1);
  REQUIRE(signals == (racing.ok() ? 3 : 2));
  // Queries on a closed workflow work by replay too.
  REQUIRE(f.Query("collector").value() == "ab");
}

TEST_CASE("Cancelling a parent applies each child's parent close policy") {
  Fixture f;
  auto parent = f.Start("parent", "Parent", {});
  REQUIRE(testutil::WaitFor(
      [&] {
        return f.Status("kid-terminate") == api::WORKFLOW_EXECUTION_STATUS_RUNNING &&
               f.Status("kid-cancel") == api::WORKFLOW_EXECUTION_STATUS_RUNNING &&
               f.Status("kid-abandon") == api::WORKFLOW_EXECUTION_STATUS_RUNNING;
      },
      absl::Seconds(20)));
  // Let the parent see its children started before it is cancelled.
  REQUIRE(testutil::WaitFor(
      [&] {
        auto history = f.client->GetHistory(parent);
        if (!history.ok()) return false;
        int started = 0;
        for (const auto& e : history->events()) {
          started += e.event_type() == api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED;
        }
        return started == 3;
      },
      absl::Seconds(20)));
  grpc::ClientContext ctx;
  api::RequestCancelWorkflowExecutionRequest cancel;
  cancel.mutable_workflow_execution()->set_workflow_id("parent");
  api::RequestCancelWorkflowExecutionResponse ignored;
  REQUIRE(f.orchestrator.connection()
              .workflow_service()
              .RequestCancelWorkflowExecution(&ctx, cancel, &ignored)
              .ok());
  auto result = f.client->GetResult(parent, absl::Seconds(30));
  REQUIRE(absl::IsCancelled(result.status()));
  REQUIRE(testutil::WaitFor(
      [&] {
        return f.Status("kid-terminate") == api::WORKFLOW_EXECUTION_STATUS_TERMINATED &&
               f.Status("kid-cancel") == api::WORKFLOW_EXECUTION_STATUS_CANCELED;
      },
      absl::Seconds(30)));
  REQUIRE(f.Status("kid-abandon") == api::WORKFLOW_EXECUTION_STATUS_RUNNING);
}

TEST_CASE("Continue-as-new: a client waiting on the first run gets the last run's result") {
  Fixture f;
  auto first = f.Start("counter", "Counter", sdk::ToPayloads(int64_t{1}));
  auto result = f.client->GetResult<std::string>(first, absl::Seconds(30));
  REQUIRE(result.value() == "reached 3");
  api::History history = f.client->GetHistory(first).value();
  REQUIRE(history.events(history.events_size() - 1).event_type() ==
          api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
}

TEST_CASE("An exclusive queue refuses a second poller until the lease lapses") {
  Fixture f;
  auto& stub = f.orchestrator.connection().workflow_service();
  auto poll = [&](const std::string& identity) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1200));
    api::PollActivityTaskQueueRequest request;
    request.mutable_task_queue()->set_name("exclusive-web");
    request.set_identity(identity);
    request.set_exclusive(true);
    api::PollActivityTaskQueueResponse response;
    return stub.PollActivityTaskQueue(&ctx, request, &response);
  };
  REQUIRE(poll("agent-1").ok());  // takes the lease (an empty answer after ~0.2 s)
  grpc::Status refused = poll("agent-2");
  REQUIRE(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  REQUIRE(refused.error_message().find("agent-1") != std::string::npos);

  grpc::ClientContext ctx;
  api::DescribeTaskQueueRequest describe;
  describe.mutable_task_queue()->set_name("exclusive-web");
  describe.set_activity(true);
  api::DescribeTaskQueueResponse described;
  REQUIRE(stub.DescribeTaskQueue(&ctx, describe, &described).ok());
  REQUIRE(described.exclusive_holder() == "agent-1");

  // The lease (1 s here) lapses once agent-1 stops polling; then agent-2 may take it.
  REQUIRE(testutil::WaitFor([&] { return poll("agent-2").ok(); }, absl::Seconds(20)));
  REQUIRE(poll("agent-1").error_code() == grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_CASE("Search attributes upserted by a workflow are listed by query at once") {
  Fixture f;
  f.Start("tagged", "Tagged", {});
  f.Start("other", "Collector", {});
  auto list = [&](const std::string& query) {
    grpc::ClientContext ctx;
    api::ListWorkflowExecutionsRequest request;
    request.set_query(query);
    api::ListWorkflowExecutionsResponse response;
    grpc::Status status = f.orchestrator.connection().workflow_service().ListWorkflowExecutions(
        &ctx, request, &response);
    std::vector<std::string> ids;
    for (const auto& e : response.executions()) ids.push_back(e.execution().workflow_id());
    return std::make_pair(status, ids);
  };
  REQUIRE(testutil::WaitFor(
      [&] {
        return list("Project = \"web\" AND ExecutionStatus = \"Running\" ORDER BY StartTime DESC")
                   .second == std::vector<std::string>{"tagged"};
      },
      absl::Seconds(20)));
  auto bad = list("Project = ");
  REQUIRE(bad.first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE(bad.first.error_message().find("query: at") == 0);
}

}  // namespace
}  // namespace kiln
