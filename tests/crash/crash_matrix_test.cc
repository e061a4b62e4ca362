// The crash matrix (issue 19): under a mixed load (activities, durable timers, signals, child
// workflows, a source fetch and podman builds on a builder agent) the orchestrator, the worker
// process (kiln_crash_worker) and the kiln-builder-agent are killed with SIGKILL at seeded
// random moments, many times in one run, and restarted. Most kills wait for work in flight
// first: an activity running in the worker, a podman build running under the agent. Afterwards
// every workflow must have completed exactly once with its expected result, every history must
// be gapless with each transition recorded once, and the task queues must be empty.
// KILN_CRASH_SEED replays a schedule; KILN_CRASH_KILLS changes how many kills it has. Where
// podman cannot build, the builds are left out with a warning (KILN_REQUIRE_PODMAN=1: fail).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "builder-agent/podman/podman.h"
#include "sdk/converter.h"
#include "tests/crash/crash_load.h"
#include "tests/testutil/git_require.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/test_worker.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;

constexpr int kDefaultKills = 16;
// Workflows started at each step of the schedule, so every kill lands on runs in every stage.
constexpr int kWorkflowsPerStep = 6;
// Gap between two kills: long enough for work to progress between them.
constexpr int kMinGapMs = 1200;
constexpr int kMaxGapMs = 3000;
// After the last restart everything must close within this.
constexpr absl::Duration kDrainDeadline = absl::Seconds(45);
// Workflows of a step that also build (their index modulo this is 0): two of six.
constexpr int kBuildEvery = 3;
// Share of kills that wait for work in flight after their gap, and how long they wait for it
// (then they kill anyway, and are counted by what they found).
constexpr double kMidTaskShare = 0.75;
constexpr absl::Duration kMidTaskWait = absl::Seconds(4);

// Whether podman can build here; the reason when not.
std::string PodmanUnavailable(const std::string& dir) {
  builder::PodmanOptions options;
  options.volume = dir + "/probe";
  auto podman = builder::Podman::Create(options);
  std::error_code ignored;
  std::filesystem::remove_all(dir + "/probe", ignored);
  return podman.ok() ? "" : std::string(podman.status().message());
}

// Whether `pid` has a child process: the agent runs podman as one, so a child means a build
// is running (the fetch is libgit2, in process).
bool HasChildren(pid_t pid) {
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
    std::ifstream children(task.path() / "children");
    std::string first;
    if (children >> first) return true;
  }
  return false;
}

// How many of `line`'s occurrences `text` holds.
int Count(const std::string& text, const std::string& line) {
  int count = 0;
  for (size_t at = text.find(line); at != std::string::npos; at = text.find(line, at + 1)) {
    ++count;
  }
  return count;
}

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr || *value == '\0' ? fallback : std::strtoull(value, nullptr, 10);
}

// Retries a client call while the orchestrator is restarting. Each call carries a request id,
// so a retry of a call that was applied before a connection broke is applied once.
template <typename Call>
grpc::Status Retrying(Call call) {
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  grpc::Status status;
  do {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    status = call(&context);
  } while ((status.error_code() == grpc::StatusCode::UNAVAILABLE ||
            status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) &&
           absl::Now() < deadline);
  return status;
}

// A short exclusive lease: after an orchestrator restart or an agent kill, the queue's next
// holder is accepted within seconds.
constexpr char kExclusiveLeaseS[] = "2";

struct Matrix {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator{dir.path() + "/data",
                                             {"--exclusive-lease", kExclusiveLeaseS}};
  std::unique_ptr<testutil::Process> worker;
  int worker_starts = 0;
  std::unique_ptr<testutil::Process> agent;
  int agent_starts = 0;
  std::string repository;
  std::string commit;

  void CreateRepository() {
    repository = dir.path() + "/origin";
    testutil::WriteFile(repository + "/README", "crash matrix\n");
    testutil::WriteFile(repository + "/Containerfile", crash::kContainerfile);
    testutil::RequireGit("", {"-C", repository, "init", "-q", "-b", "main"});
    testutil::RequireGit("", {"-C", repository, "add", "-A"});
    testutil::RequireGit("", {"-C", repository, "commit", "-q", "-m", "one"});
    commit = testutil::RequireGit("", {"-C", repository, "rev-parse", "HEAD"});
  }

  // An agent that starts while the previous one's exclusive lease still holds is refused and
  // exits: start again until one serves.
  void StartAgent() {
    absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (;;) {
      auto process = testutil::Process::Start(
          testutil::BinaryPath("kiln-builder-agent"),
          {"--orchestrator", orchestrator.address(), "--project", crash::kAgentProject, "--volume",
           dir.path() + "/volume", "--idle-grace", "3600", "--token",
           orchestrator.AgentToken(crash::kAgentProject)},
          absl::StrCat(dir.path(), "/agent-", ++agent_starts, ".log"));
      REQUIRE(process.ok());
      agent = std::move(*process);
      REQUIRE(testutil::WaitFor(
          [&] {
            return agent->Output().find("agent.serving") != std::string::npos || !agent->Running();
          },
          absl::Seconds(20)));
      if (agent->Running()) return;
      INFO(agent->Output());
      REQUIRE(absl::Now() < deadline);
    }
  }

  // Work in flight that a kill would cut short: a podman build under the agent, an activity
  // running in the worker (between its begin and end lines).
  bool AgentBuilding() const { return agent != nullptr && HasChildren(agent->pid()); }
  bool WorkerInActivity() const {
    if (worker == nullptr) return false;
    std::string output = worker->Output();
    return Count(output, "crash_worker.activity_begin") >
           Count(output, "crash_worker.activity_end");
  }

  void KillAgent() {
    agent->Signal(SIGKILL);
    (void)agent->Wait(absl::Seconds(30));
    agent.reset();
  }

  void StartWorker() {
    auto process = testutil::Process::Start(
        testutil::BinaryPath("kiln_crash_worker"), {"--orchestrator", orchestrator.address()},
        absl::StrCat(dir.path(), "/worker-", ++worker_starts, ".log"),
        {absl::StrCat("KILN_TOKEN=", orchestrator.admin_token())});
    REQUIRE(process.ok());
    worker = std::move(*process);
    REQUIRE(testutil::WaitFor(
        [&] { return worker->Output().find("crash_worker.started") != std::string::npos; },
        absl::Seconds(20)));
  }

  void KillWorker() {
    worker->Signal(SIGKILL);
    (void)worker->Wait(absl::Seconds(30));  // Reaped; a killed process's exit code says nothing.
    worker.reset();
  }

  api::WorkflowService::Stub& stub() { return orchestrator.connection().workflow_service(); }

  std::string Start(const std::string& workflow_id, bool build) {
    api::StartWorkflowExecutionRequest request;
    request.set_workflow_id(workflow_id);
    request.mutable_workflow_type()->set_name("Mixed");
    request.mutable_task_queue()->set_name(crash::kCrashQueue);
    *request.mutable_input() =
        sdk::ToPayloads(workflow_id, repository, std::string(build ? crash::kBuildInput : ""));
    request.mutable_workflow_task_timeout()->set_seconds(crash::kTaskTimeoutS);
    request.set_request_id(absl::StrCat("start-", workflow_id));
    api::StartWorkflowExecutionResponse response;
    grpc::Status status = Retrying([&](grpc::ClientContext* context) {
      return stub().StartWorkflowExecution(context, request, &response);
    });
    INFO(workflow_id << ": " << status.error_message());
    REQUIRE(status.ok());
    return response.run_id();
  }

  void Signal(const std::string& workflow_id, const std::string& run_id) {
    api::SignalWorkflowExecutionRequest request;
    request.mutable_workflow_execution()->set_workflow_id(workflow_id);
    request.mutable_workflow_execution()->set_run_id(run_id);
    request.set_signal_name(crash::kSignalName);
    *request.mutable_input() = sdk::ToPayloads(crash::SignalInput(workflow_id));
    request.set_request_id(absl::StrCat("signal-", workflow_id));
    api::SignalWorkflowExecutionResponse response;
    grpc::Status status = Retrying([&](grpc::ClientContext* context) {
      return stub().SignalWorkflowExecution(context, request, &response);
    });
    INFO(workflow_id << ": " << status.error_message());
    REQUIRE(status.ok());
  }

  int64_t Backlog(const std::string& queue, bool activity) {
    api::DescribeTaskQueueRequest request;
    request.mutable_task_queue()->set_name(queue);
    request.set_activity(activity);
    api::DescribeTaskQueueResponse response;
    grpc::Status status = Retrying([&](grpc::ClientContext* context) {
      return stub().DescribeTaskQueue(context, request, &response);
    });
    return status.ok() ? response.backlog_count() : -1;
  }
};

// What one run's history holds, checked as it is read: gapless ids, the close event last.
struct HistorySummary {
  int events = 0;
  int closes = 0;
  api::HistoryEvent close;
  std::map<std::string, int> scheduled;  // by activity id
  std::map<int64_t, int> started;        // by scheduled event id
  std::map<int64_t, int> completed;      // by scheduled event id
  int timers_started = 0;
  int timers_fired = 0;
  int signals = 0;
  int children_initiated = 0;
  int children_started = 0;
  int children_completed = 0;
  api::WorkflowExecution child;
  // Evidence that kills hit work in flight: activity attempts beyond the first, and workflow
  // tasks that timed out (their worker died holding them).
  int activity_retries = 0;
  int workflow_task_timeouts = 0;
};

HistorySummary Summarize(const api::History& history) {
  HistorySummary summary;
  summary.events = history.events_size();
  for (int i = 0; i < history.events_size(); ++i) {
    const api::HistoryEvent& e = history.events(i);
    INFO("event " << i + 1 << " of " << history.events_size());
    REQUIRE(e.event_id() == i + 1);  // gapless
    switch (e.event_type()) {
      case api::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        ++summary.scheduled[e.activity_task_scheduled_event_attributes().activity_id()];
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_STARTED:
        ++summary.started[e.activity_task_started_event_attributes().scheduled_event_id()];
        summary.activity_retries += e.activity_task_started_event_attributes().attempt() - 1;
        break;
      case api::EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
        ++summary.workflow_task_timeouts;
        break;
      case api::EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        ++summary.completed[e.activity_task_completed_event_attributes().scheduled_event_id()];
        break;
      case api::EVENT_TYPE_TIMER_STARTED:
        ++summary.timers_started;
        break;
      case api::EVENT_TYPE_TIMER_FIRED:
        ++summary.timers_fired;
        break;
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        ++summary.signals;
        break;
      case api::EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        ++summary.children_initiated;
        break;
      case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
        ++summary.children_started;
        summary.child = e.child_workflow_execution_started_event_attributes().workflow_execution();
        break;
      case api::EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
        ++summary.children_completed;
        break;
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      case api::EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        ++summary.closes;
        summary.close = e;
        REQUIRE(i == history.events_size() - 1);  // the close event is the last
        break;
      default:
        break;
    }
  }
  return summary;
}

// Each activity scheduled once, started once and completed once; `activities` of them.
void RequireActivitiesOnce(const HistorySummary& summary, size_t activities) {
  REQUIRE(summary.scheduled.size() == activities);
  for (const auto& [activity, count] : summary.scheduled) REQUIRE(count == 1);
  REQUIRE(summary.started.size() == activities);
  REQUIRE(summary.completed.size() == activities);
  for (const auto& [event, count] : summary.started) REQUIRE(count == 1);
  for (const auto& [event, count] : summary.completed) REQUIRE(count == 1);
}

std::string Result(const api::HistoryEvent& close) {
  auto result = sdk::FromPayloadAt<std::string>(
      close.workflow_execution_completed_event_attributes().result(), 0);
  return result.ok() ? *result : result.status().ToString();
}

TEST_CASE(
    "Crash matrix: kill -9 of the orchestrator and the worker and the agent at seeded moments") {
  const uint64_t seed = EnvOr("KILN_CRASH_SEED", std::random_device{}());
  const int kills = static_cast<int>(EnvOr("KILN_CRASH_KILLS", kDefaultKills));
  std::printf("crash matrix: KILN_CRASH_SEED=%llu KILN_CRASH_KILLS=%d\n",
              static_cast<unsigned long long>(seed), kills);
  std::fflush(stdout);
  INFO("KILN_CRASH_SEED=" << seed);
  absl::Time began = absl::Now();

  // The whole schedule comes from the seed before anything runs, so a seed replays it.
  enum class Target { kOrchestrator, kWorker, kAgent };
  struct Kill {
    int gap_ms;
    Target target;
    bool mid_task;  // after the gap, wait for work in flight (up to kMidTaskWait)
  };
  std::mt19937_64 random(seed);
  std::vector<Kill> schedule;
  for (int i = 0; i < kills; ++i) {
    int gap_ms = std::uniform_int_distribution<int>(kMinGapMs, kMaxGapMs)(random);
    Target target = static_cast<Target>(std::uniform_int_distribution<int>(0, 2)(random));
    bool mid_task = std::uniform_real_distribution<double>(0, 1)(random) < kMidTaskShare;
    schedule.push_back({gap_ms, target, mid_task});
  }

  Matrix matrix;
  const std::string podman_unavailable = PodmanUnavailable(matrix.dir.path());
  const bool builds = podman_unavailable.empty();
  if (!builds) {
    if (std::getenv("KILN_REQUIRE_PODMAN") != nullptr) {
      FAIL("podman cannot build here: " << podman_unavailable);
    }
    WARN("builds left out: podman cannot build here: " << podman_unavailable);
  }
  matrix.CreateRepository();
  REQUIRE(matrix.orchestrator.Start().ok());
  matrix.StartWorker();
  matrix.StartAgent();

  std::map<std::string, std::string> runs;  // workflow id -> run id
  std::set<std::string> building;           // workflow ids that build
  std::vector<std::string> previous_step;
  std::map<Target, int> killed;
  // Kills that found work in flight, by what: an activity running in the worker, a build
  // running under the agent (an orchestrator kill may find both).
  std::map<Target, int> killed_mid_activity;
  std::map<Target, int> killed_mid_build;
  for (int step = 0; step <= kills; ++step) {
    std::vector<std::string> this_step;
    for (int i = 0; i < kWorkflowsPerStep; ++i) {
      std::string id = absl::StrCat("mixed-", step, "-", i);
      const bool build = builds && i % kBuildEvery == 0;
      runs[id] = matrix.Start(id, build);
      if (build) building.insert(id);
      this_step.push_back(id);
    }
    // Signals go to the previous step's runs: they arrive in whatever stage those runs are.
    for (const std::string& id : previous_step) matrix.Signal(id, runs[id]);
    previous_step = std::move(this_step);
    if (step == kills) break;

    const Kill& kill = schedule[step];
    // The schedule's gap is the moment of the kill, not a wait for a condition; a mid-task kill
    // then waits for work in flight, and is counted by what it found.
    absl::SleepFor(absl::Milliseconds(kill.gap_ms));
    auto in_flight = [&] {
      switch (kill.target) {
        case Target::kWorker:
          return matrix.WorkerInActivity();
        case Target::kAgent:
          return matrix.AgentBuilding();
        case Target::kOrchestrator:
          return matrix.WorkerInActivity() || matrix.AgentBuilding();
      }
      return false;
    };
    if (kill.mid_task) (void)testutil::WaitFor(in_flight, kMidTaskWait);
    if (kill.target != Target::kAgent && matrix.WorkerInActivity()) {
      ++killed_mid_activity[kill.target];
    }
    if (kill.target != Target::kWorker && matrix.AgentBuilding()) ++killed_mid_build[kill.target];
    ++killed[kill.target];
    if (kill.target == Target::kOrchestrator) {
      matrix.orchestrator.Kill();
      absl::Status restarted = matrix.orchestrator.Start();
      INFO("restart after kill " << step + 1 << ": " << restarted.ToString());
      REQUIRE(restarted.ok());
    } else if (kill.target == Target::kWorker) {
      matrix.KillWorker();
      matrix.StartWorker();
    } else {
      matrix.KillAgent();
      matrix.StartAgent();
    }
  }
  for (const std::string& id : previous_step) matrix.Signal(id, runs[id]);
  absl::Time last_restart = absl::Now();

  // Every run closes within the deadline after the last restart: nothing is stuck.
  for (const auto& [id, run] : runs) {
    INFO(id);
    auto close = testutil::WaitForClose(
        matrix.stub(), id, run,
        std::max(absl::Seconds(1), last_restart + kDrainDeadline - absl::Now()));
    INFO(close.status().ToString());
    REQUIRE(close.ok());
  }
  absl::Duration drained_in = absl::Now() - last_restart;

  int workflows_checked = 0;
  int64_t events_checked = 0;
  int activity_retries = 0;
  int workflow_task_timeouts = 0;
  for (const auto& [id, run] : runs) {
    INFO(id << " " << run);
    auto history = testutil::GetHistory(matrix.stub(), id, run);
    REQUIRE(history.ok());
    HistorySummary parent = Summarize(*history);
    REQUIRE(parent.closes == 1);
    REQUIRE(parent.close.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
    const bool built = building.contains(id);
    REQUIRE(Result(parent.close) == crash::ExpectedResult(id, matrix.commit, built));
    RequireActivitiesOnce(parent, built ? 4 : 3);
    REQUIRE(parent.timers_started == 1);
    REQUIRE(parent.timers_fired == 1);
    REQUIRE(parent.signals == 1);
    REQUIRE(parent.children_initiated == 1);
    REQUIRE(parent.children_started == 1);
    REQUIRE(parent.children_completed == 1);
    REQUIRE(parent.child.workflow_id() == crash::ChildWorkflowId(id));

    INFO("child " << parent.child.run_id());
    auto child_history =
        testutil::GetHistory(matrix.stub(), parent.child.workflow_id(), parent.child.run_id());
    REQUIRE(child_history.ok());
    HistorySummary child = Summarize(*child_history);
    REQUIRE(child.closes == 1);
    REQUIRE(child.close.event_type() == api::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
    RequireActivitiesOnce(child, 1);
    REQUIRE(child.timers_started == 1);
    REQUIRE(child.timers_fired == 1);
    workflows_checked += 2;
    events_checked += parent.events + child.events;
    activity_retries += parent.activity_retries + child.activity_retries;
    workflow_task_timeouts += parent.workflow_task_timeouts + child.workflow_task_timeouts;
  }

  // No task left behind: the queues drain once every run is closed.
  REQUIRE(testutil::WaitFor(
      [&] {
        return matrix.Backlog(crash::kCrashQueue, false) == 0 &&
               matrix.Backlog(crash::kCrashQueue, true) == 0 &&
               matrix.Backlog(crash::AgentQueue(), true) == 0;
      },
      absl::Seconds(15)));

  std::printf(
      "crash matrix: seed %llu, %d kills (orchestrator %d: %d mid-activity, %d mid-build; worker "
      "%d: %d mid-activity; agent %d: %d mid-build), %d workflows checked (%zu parents + their "
      "children; %zu with a build), %lld events, %d activity retries, %d workflow task timeouts, "
      "drained %.1f s after the last restart, %.1f s in all\n",
      static_cast<unsigned long long>(seed), kills, killed[Target::kOrchestrator],
      killed_mid_activity[Target::kOrchestrator], killed_mid_build[Target::kOrchestrator],
      killed[Target::kWorker], killed_mid_activity[Target::kWorker], killed[Target::kAgent],
      killed_mid_build[Target::kAgent], workflows_checked, runs.size(), building.size(),
      static_cast<long long>(events_checked), activity_retries, workflow_task_timeouts,
      absl::ToDoubleSeconds(drained_in), absl::ToDoubleSeconds(absl::Now() - began));
  std::fflush(stdout);
  if (matrix.worker) matrix.KillWorker();
  if (matrix.agent) matrix.KillAgent();
}

}  // namespace
}  // namespace kiln
