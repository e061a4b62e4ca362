// The sample workflows on a real kiln-worker process against a real orchestrator, including a
// worker killed with SIGKILL in the middle of a workflow and started again.
#include <signal.h>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"

#include "sdk/client.h"
#include "sdk/converter.h"
#include "tests/testutil/orchestrator.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;

struct Platform {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data"};
  std::unique_ptr<testutil::Process> worker;
  int worker_starts = 0;

  void StartWorker() {
    auto process = testutil::Process::Start(
        testutil::BinaryPath("kiln-worker"),
        {"--orchestrator", orchestrator.address(), "--data-dir", dir.path() + "/worker", "--listen",
         absl::StrCat("127.0.0.1:", testutil::FreePort()), "--http",
         absl::StrCat("127.0.0.1:", testutil::FreePort()), "--auth-key-file",
         orchestrator.key_file()},
        dir.path() + "/worker-" + std::to_string(++worker_starts) + ".log");
    REQUIRE(process.ok());
    worker = std::move(*process);
    // Its podman deploy target gets ready on a thread of its own (podman's storage lock may be
    // held by another test's build): the worker connects without waiting for it.
    const bool connected = testutil::WaitFor(
        [&] { return worker->Output().find("worker.connected") != std::string::npos; },
        absl::Seconds(20));
    INFO("kiln-worker's output:\n" << worker->Output());
    REQUIRE(connected);
  }
};

absl::StatusOr<sdk::WorkflowHandle> Start(sdk::Client& client, const std::string& id,
                                          const std::string& type, const api::Payloads& input) {
  sdk::StartWorkflowOptions options;
  options.id = id;
  options.task_queue = "samples";
  return client.StartWorkflow(options, type, input);
}

TEST_CASE("The samples complete on kiln-worker: hello, three steps, timer with parallel work") {
  Platform p;
  REQUIRE(p.orchestrator.Start().ok());
  p.StartWorker();
  sdk::Client client(p.orchestrator.connection());

  auto hello = Start(client, "hello", "Hello", sdk::ToPayloads(std::string("Kiln")));
  REQUIRE(hello.ok());
  REQUIRE(client.GetResult<std::string>(*hello, absl::Seconds(30)).value() == "Hello, Kiln!");

  auto steps = Start(client, "steps", "ThreeSteps", sdk::ToPayloads(std::string("kiln")));
  REQUIRE(client.GetResult<std::string>(*steps, absl::Seconds(30)).value() == "NLIK!");

  auto timer = Start(client, "timer", "TimerParallel", sdk::ToPayloads(int64_t{1}));
  REQUIRE(client.GetResult<std::string>(*timer, absl::Seconds(30)).value() == "14");

  // The timer workflow's history: a timer, then three activities scheduled in one task.
  api::History history = client.GetHistory(*timer).value();
  int scheduled_together = 0;
  bool timer_fired = false;
  for (int i = 0; i < history.events_size(); ++i) {
    const auto& e = history.events(i);
    REQUIRE(e.event_id() == i + 1);
    timer_fired |= e.event_type() == api::EVENT_TYPE_TIMER_FIRED;
    if (e.event_type() == api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED &&
        history.events(i - 1).event_type() != api::EVENT_TYPE_WORKFLOW_TASK_COMPLETED) {
      ++scheduled_together;
    }
  }
  REQUIRE(timer_fired);
  REQUIRE(scheduled_together == 2);  // the 2nd and 3rd follow the 1st directly

  p.worker->Signal(SIGTERM);
  REQUIRE(p.worker->Wait(absl::Seconds(30)).value() == 0);
}

TEST_CASE("A worker killed mid-workflow is replaced and the workflow completes once") {
  Platform p;
  REQUIRE(p.orchestrator.Start().ok());
  p.StartWorker();
  sdk::Client client(p.orchestrator.connection());
  // Three seconds on a timer: the worker dies while the workflow waits.
  auto timer = Start(client, "survivor", "TimerParallel", sdk::ToPayloads(int64_t{3}));
  REQUIRE(timer.ok());
  REQUIRE(testutil::WaitFor(
      [&] {
        auto described = client.Describe(*timer);
        return described.ok() && described->pending_timers_size() == 1;
      },
      absl::Seconds(20)));
  p.worker->Signal(SIGKILL);
  REQUIRE(p.worker->Wait(absl::Seconds(10)).ok());
  p.StartWorker();  // a fresh process: it must replay the history to continue
  REQUIRE(client.GetResult<std::string>(*timer, absl::Seconds(60)).value() == "14");
  api::History history = client.GetHistory(*timer).value();
  int completed = 0;
  for (const auto& e : history.events()) {
    completed += e.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED;
  }
  REQUIRE(completed == 1);
}

}  // namespace
}  // namespace kiln
