// The push stream (WorkerStream) against a real orchestrator: workflow and activity tasks
// pushed to workers in this process, credits, a stream broken mid-task, exclusive queues and
// tokens. The workers here never share a process-local fast path: no eager start or activity.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/auth/token.h"
#include "common/rpc_status.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using api::Payloads;

absl::StatusOr<Payloads> Echo(sdk::ActivityContext&, const Payloads& in) { return in; }

sdk::Task<absl::StatusOr<Payloads>> OneActivity(sdk::WorkflowContext& ctx, Payloads input) {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(10);
  co_return co_await ctx.ExecuteActivity("Echo", input, options);
}

// How many calls of `method` the orchestrator has answered.
int64_t RpcCount(const testutil::OrchestratorProcess& orchestrator, const std::string& method) {
  absl::StatusOr<std::string> metrics =
      testutil::HttpGet("127.0.0.1", orchestrator.metrics_port(), "/metrics");
  REQUIRE(metrics.ok());
  const std::string key = "kiln_rpc_latency_seconds_count{method=\"" + method + "\"} ";
  size_t at = metrics->find(key);
  if (at == std::string::npos) return 0;
  return std::stoll(metrics->substr(at + key.size()));
}

struct Fresh {
  Fresh() {
    REQUIRE(orchestrator.Start().ok());
    client = std::make_unique<sdk::Client>(orchestrator.connection());
  }
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data"};
  std::unique_ptr<sdk::Client> client;
};

TEST_CASE("Workflow and activity tasks come down the stream with no poll") {
  Fresh fresh;
  auto& orchestrator = fresh.orchestrator;
  // Separate connections: no process-local fast path between the workers.
  sdk::Connection wf_connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::Connection act_connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::ActivityWorker activities(act_connection, "streamed", {.identity = "act", .pollers = 1});
  REQUIRE(activities.Register("Echo", Echo).ok());
  REQUIRE(activities.Start().ok());
  sdk::WorkflowWorker workflows(wf_connection, "streamed", {.identity = "wf", .pollers = 1});
  workflows.Register("OneActivity", OneActivity);
  workflows.Start();

  std::vector<absl::Duration> took;
  for (int i = 0; i < 20; ++i) {
    absl::Time began = absl::Now();
    auto handle =
        fresh.client->StartWorkflow({.id = absl::StrCat("streamed-", i), .task_queue = "streamed"},
                                    "OneActivity", sdk::ToPayloads(std::string("kiln")));
    REQUIRE(handle.ok());
    REQUIRE(fresh.client->GetResult<std::string>(*handle, absl::Seconds(30)).value() == "kiln");
    took.push_back(absl::Now() - began);
  }
  std::sort(took.begin(), took.end());
  WARN("sequential p50 " << absl::FormatDuration(took[took.size() / 2]));
  CHECK(RpcCount(orchestrator, "PollWorkflowTaskQueue") == 0);
  CHECK(RpcCount(orchestrator, "PollActivityTaskQueue") == 0);
  CHECK(RpcCount(orchestrator, "RespondWorkflowTaskCompleted") == 0);
  CHECK(RpcCount(orchestrator, "RespondActivityTaskCompleted") == 0);
  CHECK(RpcCount(orchestrator, "WorkerStream.RespondWorkflowTaskCompleted") == 40);
  CHECK(RpcCount(orchestrator, "WorkerStream.RespondActivityTaskCompleted") == 20);
  workflows.Stop();
  activities.Stop();
  REQUIRE(orchestrator.Stop().value() == 0);
}

}  // namespace
}  // namespace kiln
