// The client's pure parts: how a close event becomes a result or an error, and which RPC
// errors are retried. (Calls against a real orchestrator: tests/integration/sdk_activity_test.)
#include "sdk/client.h"

#include <catch2/catch.hpp>

#include "sdk/internal/eager.h"

namespace kiln::sdk {
namespace {

const WorkflowHandle kHandle{"deploy-1", "run-9"};

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

TEST_CASE("A completed run gives its result") {
  api::HistoryEvent close;
  close.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  *close.mutable_workflow_execution_completed_event_attributes()->mutable_result() =
      ToPayloads(std::string("done"));
  auto result = ResultFromCloseEvent(kHandle, close);
  REQUIRE(result.ok());
  REQUIRE(FromPayloadAt<std::string>(*result, 0).value() == "done");
}

TEST_CASE("A failed run is an error naming the failure and its causes") {
  api::HistoryEvent close;
  close.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED);
  api::Failure* failure =
      close.mutable_workflow_execution_failed_event_attributes()->mutable_failure();
  failure->set_message("deploy failed");
  failure->mutable_application_failure_info()->set_type("DeployError");
  failure->mutable_cause()->set_message("activity build timed out");
  failure->mutable_cause()->mutable_timeout_failure_info()->set_timeout_type(
      api::TIMEOUT_TYPE_HEARTBEAT);
  auto result = ResultFromCloseEvent(kHandle, close);
  REQUIRE(result.status().code() == absl::StatusCode::kAborted);
  REQUIRE(std::string(result.status().message()) ==
          "workflow 'deploy-1' (run run-9) failed: deploy failed [type DeployError]; cause: "
          "activity build timed out [TIMEOUT_TYPE_HEARTBEAT]");
  REQUIRE(ClosedStatusOf(result.status()) == api::WORKFLOW_EXECUTION_STATUS_FAILED);
  auto carried = WorkflowFailureOf(result.status());
  REQUIRE(carried.has_value());
  REQUIRE(carried->application_failure_info().type() == "DeployError");
}

TEST_CASE("Terminated, timed out and canceled runs say so") {
  api::HistoryEvent terminated;
  terminated.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED);
  terminated.mutable_workflow_execution_terminated_event_attributes()->set_reason("operator");
  auto t = ResultFromCloseEvent(kHandle, terminated);
  REQUIRE(t.status().code() == absl::StatusCode::kAborted);
  REQUIRE(std::string(t.status().message()) ==
          "workflow 'deploy-1' (run run-9) was terminated: operator");
  REQUIRE(ClosedStatusOf(t.status()) == api::WORKFLOW_EXECUTION_STATUS_TERMINATED);
  REQUIRE_FALSE(WorkflowFailureOf(t.status()).has_value());

  api::HistoryEvent timed_out;
  timed_out.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT);
  auto o = ResultFromCloseEvent({"w", ""}, timed_out);
  REQUIRE(o.status().code() == absl::StatusCode::kDeadlineExceeded);
  REQUIRE(std::string(o.status().message()) == "workflow 'w' timed out");
  REQUIRE(ClosedStatusOf(o.status()) == api::WORKFLOW_EXECUTION_STATUS_TIMED_OUT);

  api::HistoryEvent canceled;
  canceled.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED);
  auto c = ResultFromCloseEvent(kHandle, canceled);
  REQUIRE(c.status().code() == absl::StatusCode::kCancelled);
  REQUIRE(Contains(c.status(), "was canceled"));
  REQUIRE(ClosedStatusOf(c.status()) == api::WORKFLOW_EXECUTION_STATUS_CANCELED);

  api::HistoryEvent not_close;
  not_close.set_event_type(api::EVENT_TYPE_TIMER_FIRED);
  REQUIRE(ResultFromCloseEvent(kHandle, not_close).status().code() == absl::StatusCode::kInternal);
  // An error that is not about a closed run has no closed status.
  REQUIRE(ClosedStatusOf(absl::DeadlineExceededError("still running")) ==
          api::WORKFLOW_EXECUTION_STATUS_UNSPECIFIED);
}

TEST_CASE("Only UNAVAILABLE is retried, a bounded number of times") {
  FakeClock clock;
  RpcPolicy policy;
  policy.max_attempts = 3;
  policy.initial_backoff = absl::ZeroDuration();  // The fake clock would never let it pass.

  int calls = 0;
  absl::Status status = CallWithRetry(policy, clock, "Method", [&](grpc::ClientContext* c) {
    ++calls;
    REQUIRE(c->deadline() > std::chrono::system_clock::now());
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
  });
  REQUIRE(calls == 3);
  REQUIRE(status.code() == absl::StatusCode::kUnavailable);
  REQUIRE(std::string(status.message()) == "Method: connection refused");

  calls = 0;
  status = CallWithRetry(policy, clock, "Method", [&](grpc::ClientContext*) {
    ++calls;
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such run");
  });
  REQUIRE(calls == 1);
  REQUIRE(status.code() == absl::StatusCode::kNotFound);

  calls = 0;
  status = CallWithRetry(policy, clock, "Method", [&](grpc::ClientContext*) {
    return ++calls < 3 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting")
                       : grpc::Status::OK;
  });
  REQUIRE(status.ok());
  REQUIRE(calls == 3);
}

}  // namespace
}  // namespace kiln::sdk

namespace kiln::sdk {
namespace {

TEST_CASE("A local run settles with its close event, or as left when its last task ends open") {
  api::HistoryEvent close;
  close.set_event_id(11);
  close.set_event_type(api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);

  LocalRun closed_here;
  closed_here.Hold();  // first task
  closed_here.Hold();  // an activity it started
  closed_here.Release();
  CHECK_FALSE(closed_here.settled());
  closed_here.Closed(close);
  closed_here.Release();
  REQUIRE(closed_here.settled());
  auto event = closed_here.Wait(absl::InfiniteFuture());
  REQUIRE(event.has_value());
  CHECK(event->event_id() == 11);

  LocalRun left;
  left.Hold();
  left.Release();
  CHECK(left.settled());
  CHECK_FALSE(left.Wait(absl::InfiniteFuture()).has_value());
  left.Closed(close);  // too late: whoever waits has gone to the orchestrator
  CHECK_FALSE(left.Wait(absl::InfiniteFuture()).has_value());

  LocalRun open;
  open.Hold();
  CHECK_FALSE(open.Wait(absl::Now() + absl::Milliseconds(5)).has_value());
  CHECK_FALSE(open.settled());
}

}  // namespace
}  // namespace kiln::sdk
