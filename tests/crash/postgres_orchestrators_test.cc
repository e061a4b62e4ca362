// Orchestrator processes on PostgreSQL (a cluster of the test's own) when something around them
// fails: a second orchestrator started on the same database (the store's claim fences the first
// out), the database restarted under load (transitions fail cleanly and resume, nothing half
// applied), and the schema created by `kiln-orchestrator migrate` and checked at start.
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/postgres.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using testutil::OrchestratorProcess;
using testutil::PostgresCluster;

std::unique_ptr<PostgresCluster> StartClusterOrSkip() {
  auto cluster = PostgresCluster::Start();
  if (absl::IsFailedPrecondition(cluster.status())) {
    if (testutil::PostgresRequired()) FAIL("PostgreSQL required: " << cluster.status().message());
    WARN("SKIPPED: PostgreSQL cannot start here: " << cluster.status().message());
    return nullptr;
  }
  INFO(cluster.status().ToString());
  REQUIRE(cluster.ok());
  return std::move(*cluster);
}

std::string Uri(const PostgresCluster& cluster) {
  return absl::StrCat("postgres://kiln@127.0.0.1:", cluster.port(), "/postgres");
}

// The run's event types, for a failure message.
std::string EventTypes(api::WorkflowService::Stub& stub, const std::string& id,
                       const std::string& run) {
  auto history = testutil::GetHistory(stub, id, run);
  if (!history.ok()) return history.status().ToString();
  std::string types;
  for (const api::HistoryEvent& event : history->events()) {
    absl::StrAppend(&types, api::EventType_Name(event.event_type()), " ");
  }
  return types;
}

// Event ids 1..N and one close event: a history written whole.
void CheckHistoryWhole(api::WorkflowService::Stub& stub, const std::string& id,
                       const std::string& run) {
  INFO(id);
  auto history = testutil::GetHistory(stub, id, run);
  REQUIRE(history.ok());
  int closes = 0;
  for (int i = 0; i < history->events_size(); ++i) {
    REQUIRE(history->events(i).event_id() == i + 1);
    if (history->events(i).event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) ++closes;
  }
  CHECK(closes == 1);
}

TEST_CASE("A second orchestrator on the database fences the first out") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  testutil::TempDir dir;
  OrchestratorProcess a(dir.path() + "/a", {"--store", Uri(*cluster)});
  REQUIRE(a.Start().ok());
  auto& a_stub = a.connection().workflow_service();
  std::string first = testutil::StartWorkflow(a_stub, "a-1", "steps", "q", "1").value();

  OrchestratorProcess b(dir.path() + "/b", {"--store", Uri(*cluster)});
  absl::Status b_started = b.Start();
  INFO(b_started.ToString());
  REQUIRE(b_started.ok());
  // A no longer writes: its next transition fails, and nothing of it lands.
  absl::StatusOr<std::string> after = testutil::StartWorkflow(a_stub, "a-after", "steps", "q", "1");
  INFO(after.status().ToString());
  CHECK(absl::IsUnavailable(after.status()));
  // Its health says so: the store's writes are NOT_SERVING (reads go on).
  auto health = grpc::health::v1::Health::NewStub(a.connection().channel());
  grpc::ClientContext health_ctx;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("kiln.store.writes");
  grpc::health::v1::HealthCheckResponse response;
  REQUIRE(health->Check(&health_ctx, request, &response).ok());
  CHECK(response.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  // B carries on with A's runs and its own.
  auto& b_stub = b.connection().workflow_service();
  testutil::TestWorker worker(b.connection().channel(), "q");
  worker.Start();
  std::string second = testutil::StartWorkflow(b_stub, "b-1", "steps", "q", "1").value();
  for (const auto& [id, run] : {std::pair{"a-1", first}, std::pair{"b-1", second}}) {
    auto close = testutil::WaitForClose(b_stub, id, run, absl::Seconds(60));
    INFO(id << ": " << close.status());
    REQUIRE(close.ok());
    CHECK(close->event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
    CheckHistoryWhole(b_stub, id, run);
  }
  worker.Stop();
  grpc::ClientContext ctx;
  api::DescribeWorkflowExecutionRequest describe;
  describe.mutable_execution()->set_workflow_id("a-after");
  api::DescribeWorkflowExecutionResponse described;
  CHECK(b_stub.DescribeWorkflowExecution(&ctx, describe, &described).error_code() ==
        grpc::StatusCode::NOT_FOUND);
}

// Callers start workflows in a loop while PostgreSQL is killed (pg_ctl stop -m immediate) and
// started again under them. Every call succeeds or fails with UNAVAILABLE; every acknowledged
// workflow completes with a whole history; a workflow whose start failed is either absent or
// (an unknown outcome that did commit) runs to completion too.
TEST_CASE(
    "PostgreSQL restarted under an orchestrator's load: transitions fail cleanly and resume") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  testutil::TempDir dir;
  OrchestratorProcess orchestrator(dir.path() + "/data", {"--store", Uri(*cluster)});
  REQUIRE(orchestrator.Start().ok());
  auto& stub = orchestrator.connection().workflow_service();
  testutil::TestWorker worker(orchestrator.connection().channel(), "q", 2, 2);
  worker.Start();

  std::mutex mu;
  std::map<std::string, std::string> acknowledged;  // workflow id -> run id
  std::vector<std::string> failed;
  std::vector<std::string> unexpected;
  std::atomic<bool> stop{false};
  std::vector<std::thread> callers;
  for (int c = 0; c < 2; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        std::string id = absl::StrCat("load-", c, "-", i);
        auto run = testutil::StartWorkflow(stub, id, "steps", "q", "2");
        std::lock_guard<std::mutex> lock(mu);
        if (run.ok()) {
          acknowledged[id] = *run;
        } else {
          failed.push_back(id);
          if (!absl::IsUnavailable(run.status())) unexpected.push_back(run.status().ToString());
        }
      }
    });
  }
  auto count = [&](bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    return ok ? acknowledged.size() : failed.size();
  };
  REQUIRE(testutil::WaitFor([&] { return count(true) >= 20; }, absl::Seconds(60)));
  REQUIRE(cluster->Kill().ok());
  CHECK(testutil::WaitFor([&] { return count(false) >= 3; }, absl::Seconds(60)));
  const size_t before = count(true);
  REQUIRE(cluster->Restart().ok());
  CHECK(testutil::WaitFor([&] { return count(true) >= before + 20; }, absl::Seconds(90)));
  stop = true;
  for (std::thread& t : callers) t.join();

  std::lock_guard<std::mutex> lock(mu);
  INFO("acknowledged " << acknowledged.size() << ", failed " << failed.size());
  for (const std::string& error : unexpected) INFO(error);
  CHECK(unexpected.empty());
  for (const auto& [id, run] : acknowledged) {
    INFO(id);
    auto close = testutil::WaitForClose(stub, id, run, absl::Seconds(120));
    INFO(close.status().ToString());
    if (!close.ok()) UNSCOPED_INFO("history: " << EventTypes(stub, id, run));
    REQUIRE(close.ok());
    CHECK(close->event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
    CheckHistoryWhole(stub, id, run);
  }
  for (const std::string& id : failed) {
    grpc::ClientContext ctx;
    api::DescribeWorkflowExecutionRequest describe;
    describe.mutable_execution()->set_workflow_id(id);
    api::DescribeWorkflowExecutionResponse described;
    grpc::Status status = stub.DescribeWorkflowExecution(&ctx, describe, &described);
    INFO(id << ": " << status.error_message());
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) continue;
    REQUIRE(status.ok());
    std::string run = described.workflow_execution_info().execution().run_id();
    auto close = testutil::WaitForClose(stub, id, run, absl::Seconds(120));
    if (!close.ok()) UNSCOPED_INFO("history: " << EventTypes(stub, id, run));
    REQUIRE(close.ok());
    CheckHistoryWhole(stub, id, run);
  }
  worker.Stop();
}

TEST_CASE("kiln-orchestrator migrate creates the schema and a start refuses a newer one") {
  auto cluster = StartClusterOrSkip();
  if (!cluster) return;
  const std::string orchestrator = testutil::BinaryPath("kiln-orchestrator");
  std::string out;
  REQUIRE(testutil::RunCommand(orchestrator, {"migrate", "--store", Uri(*cluster)}, &out).value() ==
          0);
  CHECK_THAT(out, Catch::Contains("created the kiln schema, version 1"));
  REQUIRE(testutil::RunCommand(orchestrator, {"migrate", "--store", Uri(*cluster)}, &out).value() ==
          0);
  CHECK_THAT(out, Catch::Contains("at version 1 already"));
  CHECK(testutil::RunCommand(orchestrator, {"migrate"}, &out).value() == 2);

  std::string psql_out;
  REQUIRE(
      testutil::RunCommand("/usr/lib/postgresql/15/bin/psql",
                           {"-h", "127.0.0.1", "-p", absl::StrCat(cluster->port()), "-U", "kiln",
                            "-d", "postgres", "-c", "UPDATE kiln_schema SET version = 2"},
                           &psql_out)
          .value() == 0);
  testutil::TempDir dir;
  CHECK(testutil::RunCommand(orchestrator,
                             {"--data-dir", dir.path() + "/data", "--listen", "127.0.0.1:0",
                              "--metrics", "", "--store", Uri(*cluster)},
                             &out)
            .value() == 1);
  CHECK_THAT(out, Catch::Contains("written by a newer Kiln"));
  CHECK(testutil::RunCommand(orchestrator, {"migrate", "--store", Uri(*cluster)}, &out).value() ==
        1);
}

}  // namespace
}  // namespace kiln
