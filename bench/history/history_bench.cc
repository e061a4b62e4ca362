// The history engine alone: the CPU each kind of transition costs, without gRPC, RocksDB or
// fsync (an in-memory store, a fake clock, one thread). Workflows run the engine benchmark's
// eager path: start with the first task, a completion that schedules an activity started at
// once, the activity's completion bringing the next task with a partial history, ... and the
// completion that closes the run. Prints one table and its method.
//
//   kiln-history-bench [--workflows 20000] [--activities 1,3]
#include <time.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "orchestrator/history/engine_harness.h"

namespace kiln::bench {
namespace {

namespace api = ::kiln::api::v1;
using orchestrator::testing::EngineHarness;
using orchestrator::testing::Text;

// This thread's CPU time: no other thread's work, no time spent waiting.
double ThreadCpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// CPU per call, by call.
struct Costs {
  std::map<std::string, std::pair<int64_t, double>> by_call;  // calls, total µs
  template <typename F>
  auto Time(const std::string& call, F&& f) {
    double began = ThreadCpuUs();
    auto result = f();
    auto& [calls, total] = by_call[call];
    ++calls;
    total += ThreadCpuUs() - began;
    return result;
  }
};

[[noreturn]] void Die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "kiln-history-bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  std::exit(1);
}

api::Command ScheduleEager(int i) {
  api::Command command =
      EngineHarness::ScheduleActivity(absl::StrCat("a", i), "Noop", absl::Seconds(10));
  command.mutable_schedule_activity_task_command_attributes()->set_request_eager_execution(true);
  return command;
}

// One workflow with `activities` sequential activities, all on the eager path.
void RunOne(EngineHarness& h, Costs& costs, int64_t n, int activities) {
  api::StartWorkflowExecutionRequest start;
  start.set_workflow_id(absl::StrCat("wf-", n));
  start.mutable_workflow_type()->set_name("bench");
  start.mutable_task_queue()->set_name("q");
  start.set_identity("worker");
  start.set_request_id(absl::StrCat("req-", n));
  start.set_request_eager_execution(true);
  *start.mutable_input() = Text("\"x\"");
  auto started = costs.Time("start (with the first task)",
                            [&] { return h.engine().StartWorkflowExecution(start); });
  if (!started.ok()) Die("start", started.status());
  api::PollWorkflowTaskQueueResponse task = started->eager_workflow_task();
  for (int i = 0; i <= activities; ++i) {
    api::RespondWorkflowTaskCompletedRequest completed;
    completed.set_task_token(task.task_token());
    completed.set_identity("worker");
    completed.set_sticky_worker("worker-instance");
    *completed.add_commands() =
        i < activities ? ScheduleEager(i) : EngineHarness::CompleteWorkflow("\"x\"");
    auto answer = costs.Time(
        i < activities ? "task completed, activity started" : "task completed, run closed",
        [&] { return h.engine().RespondWorkflowTaskCompleted(completed); });
    if (!answer.ok()) Die("workflow task completion", answer.status());
    if (i == activities) break;
    if (answer->activity_tasks_size() != 1) {
      Die("workflow task completion", absl::InternalError("no eager activity came back"));
    }
    api::RespondActivityTaskCompletedRequest done;
    done.set_task_token(answer->activity_tasks(0).task_token());
    done.set_identity("worker");
    *done.mutable_result() = Text("\"x\"");
    done.set_return_new_workflow_task(true);
    done.set_workflow_task_identity("worker");
    done.set_workflow_task_partial_history(true);
    auto next = costs.Time("activity completed, next task started",
                           [&] { return h.engine().RespondActivityTaskCompleted(done); });
    if (!next.ok()) Die("activity completion", next.status());
    if (!next->has_workflow_task()) {
      Die("activity completion", absl::InternalError("no next workflow task came back"));
    }
    task = next->workflow_task();
  }
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  using namespace kiln;
  CLI::App app{"kiln-history-bench: the history engine's CPU per transition"};
  int64_t workflows = 20'000;
  std::vector<int> activities = {1, 3};
  app.add_option("--workflows", workflows, "Workflows per row (all kept in memory)")
      ->check(CLI::Range(int64_t{100}, int64_t{200'000}))
      ->capture_default_str();
  app.add_option("--activities", activities, "Sequential activities per workflow, a row each")
      ->delimiter(',')
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  struct Row {
    int activities;
    std::string call;
    int64_t calls;
    double us;
  };
  std::vector<Row> rows;
  for (int n : activities) {
    orchestrator::testing::EngineHarness h;
    bench::Costs costs;
    for (int64_t i = 0; i < workflows / 10; ++i) bench::RunOne(h, costs, -1 - i, n);  // warm up
    costs.by_call.clear();
    for (int64_t i = 0; i < workflows; ++i) bench::RunOne(h, costs, i, n);
    double total = 0;
    for (const auto& [call, cost] : costs.by_call) {
      rows.push_back({n, call, cost.first, cost.second / static_cast<double>(cost.first)});
      total += cost.second;
    }
    rows.push_back({n, "whole workflow", workflows, total / static_cast<double>(workflows)});
    std::cerr << "  " << n << " activities: " << total / static_cast<double>(workflows)
              << " us per workflow\n";
  }

  std::cout << "\nkiln history engine benchmark\n\n"
            << "Method: HistoryEngine on an in-memory store with a fake clock, called on one\n"
            << "thread (no gRPC, no RocksDB, no fsync): the engine's own CPU. Each workflow is\n"
            << "the engine benchmark's eager path: a start that returns the first workflow\n"
            << "task, completions that schedule one activity started at once, the activity's\n"
            << "completion bringing the next task (partial history), the completion that\n"
            << "closes the run. CPU is this thread's (CLOCK_THREAD_CPUTIME_ID) around each\n"
            << "call, averaged over " << workflows << " workflows after " << workflows / 10
            << " to warm up.\n\n";
  std::cout << "| activities | call | calls | CPU per call |\n| --- | --- | --- | --- |\n";
  for (const Row& row : rows) {
    char us[32];
    std::snprintf(us, sizeof(us), "%.1f us", row.us);
    std::cout << "| " << row.activities << " | " << row.call << " | " << row.calls << " | " << us
              << " |\n";
  }
  return 0;
}
