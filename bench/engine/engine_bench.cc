// The engine benchmark: a real kiln-orchestrator (RocksDB, WAL synced on every transition) and,
// in this process, a worker (workflow + activity runtimes) and closed-loop callers, all over
// gRPC on 127.0.0.1. Prints one table and its method. See docs/benchmarks.md.
//
//   kiln-engine-bench [--duration 20] [--sequential 500] [--scale 100000] [--only rpc,a,b,scale]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/orchestrator.h"

namespace kiln::bench {
namespace {

using sdk::api::Payloads;

sdk::Task<absl::StatusOr<Payloads>> Steps(sdk::WorkflowContext& ctx, Payloads input, int steps) {
  sdk::ActivityOptions options;
  options.start_to_close_timeout = absl::Seconds(30);
  Payloads value = input;
  for (int i = 0; i < steps; ++i) {
    auto result = co_await ctx.ExecuteActivity("Noop", value, options);
    if (!result.ok()) co_return result.status();
    value = *result;
  }
  co_return value;
}

sdk::Task<absl::StatusOr<Payloads>> One(sdk::WorkflowContext& ctx, Payloads input) {
  return Steps(ctx, std::move(input), 1);
}
sdk::Task<absl::StatusOr<Payloads>> Three(sdk::WorkflowContext& ctx, Payloads input) {
  return Steps(ctx, std::move(input), 3);
}
sdk::Task<absl::StatusOr<Payloads>> Sleeper(sdk::WorkflowContext& ctx, Payloads input) {
  absl::Status slept = co_await ctx.Sleep(absl::Hours(1));
  if (!slept.ok()) co_return slept;
  co_return input;
}

struct ProcStats {
  int64_t rss_kib = 0;
  int64_t peak_rss_kib = 0;
  double cpu_seconds = 0;
};

ProcStats ReadProc(pid_t pid) {
  ProcStats stats;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) stats.rss_kib = std::stoll(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) stats.peak_rss_kib = std::stoll(line.substr(6));
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::vector<std::string> fields = absl::StrSplit(content.substr(content.rfind(')') + 2), ' ');
  if (fields.size() > 13) {
    stats.cpu_seconds =
        static_cast<double>(std::stoll(fields[11]) + std::stoll(fields[12])) / sysconf(_SC_CLK_TCK);
  }
  return stats;
}

struct Row {
  std::string scenario;
  std::string metric;
  std::string value;
};
std::vector<Row> rows;
void Add(std::string scenario, std::string metric, std::string value) {
  std::cerr << "  " << scenario << ": " << metric << " = " << value << "\n";
  rows.push_back({std::move(scenario), std::move(metric), std::move(value)});
}

std::string Ms(absl::Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f ms", absl::ToDoubleMilliseconds(d));
  return buf;
}

absl::Duration Percentile(std::vector<absl::Duration> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

std::atomic<int64_t> next_id{0};
// Set: starts are eager (the first workflow task runs on the caller's thread).
sdk::EagerWorkflowTaskRunner* eager_worker = nullptr;

absl::Status RunOne(sdk::Client& client, const std::string& type) {
  sdk::StartWorkflowOptions options;
  options.id = absl::StrCat("bench-", next_id.fetch_add(1));
  options.task_queue = "bench";
  options.eager_worker = eager_worker;
  auto handle = client.StartWorkflow(options, type, sdk::ToPayloads(std::string("x")));
  if (!handle.ok()) return handle.status();
  return client.GetResult(*handle, absl::Seconds(60)).status();
}

void Sequential(sdk::Connection& connection, const std::string& type, int count) {
  sdk::Client client(connection);
  for (int i = 0; i < 20; ++i) (void)RunOne(client, type);  // warm up
  std::vector<absl::Duration> latencies;
  for (int i = 0; i < count; ++i) {
    absl::Time start = absl::Now();
    absl::Status status = RunOne(client, type);
    if (!status.ok()) {
      std::cerr << "workflow failed: " << status << "\n";
      continue;
    }
    latencies.push_back(absl::Now() - start);
  }
  Add(type, absl::StrCat("sequential p50 (", latencies.size(), " workflows)"),
      Ms(Percentile(latencies, 0.50)));
  Add(type, "sequential p99", Ms(Percentile(latencies, 0.99)));
}

// The floor under every step: one RPC that reads a cached run and writes nothing.
void RpcFloor(sdk::Connection& connection, int count) {
  sdk::Client client(connection);
  sdk::StartWorkflowOptions options;
  options.id = "bench-floor";
  options.task_queue = "bench";
  auto handle = client.StartWorkflow(options, "a", sdk::ToPayloads(std::string("x")));
  if (!handle.ok() || !client.GetResult(*handle, absl::Seconds(60)).ok()) return;
  std::vector<absl::Duration> latencies;
  for (int i = 0; i < count; ++i) {
    absl::Time start = absl::Now();
    if (!client.Describe(*handle).ok()) continue;
    latencies.push_back(absl::Now() - start);
  }
  if (latencies.empty()) return;
  Add("rpc", absl::StrCat("read-only RPC round trip p50 (Describe, ", latencies.size(), " calls)"),
      Ms(Percentile(latencies, 0.50)));
}

// What a closed-loop run measured: calls that succeeded and failed while measuring, over
// `elapsed`, and the CPU both processes spent meanwhile.
struct LoopResult {
  int64_t done = 0;
  int64_t failed = 0;
  absl::Duration elapsed;
  double orchestrator_cpu_s = 0;
  double self_cpu_s = 0;

  double rate() const { return static_cast<double>(done) / absl::ToDoubleSeconds(elapsed); }
  // Microseconds of CPU per successful call: both processes, or the orchestrator's alone.
  double us_each(bool orchestrator_only = false) const {
    if (done == 0) return 0;
    double cpu = orchestrator_cpu_s + (orchestrator_only ? 0 : self_cpu_s);
    return 1e6 * cpu / static_cast<double>(done);
  }
};

// `callers` threads each calling `call` back to back; measures `duration` after `warm_up`.
// `call` gets the caller's own client.
LoopResult ClosedLoop(sdk::Connection& connection, pid_t orchestrator, int callers,
                      absl::Duration warm_up, absl::Duration duration,
                      const std::function<absl::Status(sdk::Client&)>& call) {
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  std::atomic<int64_t> done{0}, failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&] {
      sdk::Client client(connection);
      while (!stop) {
        absl::Status status = call(client);
        if (!measuring) continue;
        if (status.ok()) {
          ++done;
        } else {
          ++failed;
        }
      }
    });
  }
  absl::SleepFor(warm_up);
  ProcStats before = ReadProc(orchestrator), self_before = ReadProc(getpid());
  measuring = true;
  absl::Time start = absl::Now();
  absl::SleepFor(duration);
  measuring = false;
  LoopResult result;
  result.elapsed = absl::Now() - start;
  ProcStats after = ReadProc(orchestrator), self_after = ReadProc(getpid());
  stop = true;
  for (auto& t : threads) t.join();
  result.done = done.load();
  result.failed = failed.load();
  result.orchestrator_cpu_s = after.cpu_seconds - before.cpu_seconds;
  result.self_cpu_s = self_after.cpu_seconds - self_before.cpu_seconds;
  return result;
}

// The ceiling over every throughput figure: `callers` closed loops of the same read-only RPC,
// and what one costs in CPU (both processes). A workflow takes one RPC per transition.
void RpcCeiling(sdk::Connection& connection, pid_t orchestrator, int callers,
                absl::Duration duration) {
  sdk::WorkflowHandle handle;
  handle.workflow_id = "bench-floor";
  LoopResult r = ClosedLoop(connection, orchestrator, callers, absl::Seconds(1), duration,
                            [&](sdk::Client& client) { return client.Describe(handle).status(); });
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%.0f RPCs/s, %.0f us CPU each (both processes)", r.rate(),
                r.us_each());
  Add("rpc", absl::StrCat("read-only RPC throughput (Describe, ", callers, " callers)"), buf);
}

void Throughput(sdk::Connection& connection, pid_t orchestrator, const std::string& type,
                int callers, absl::Duration duration) {
  LoopResult r = ClosedLoop(connection, orchestrator, callers, absl::Seconds(2), duration,
                            [&](sdk::Client& client) { return RunOne(client, type); });
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.0f workflows/s (%lld failed)", r.rate(),
                static_cast<long long>(r.failed));
  Add(type, absl::StrCat("throughput, ", callers, " callers"), buf);
  std::snprintf(buf, sizeof(buf), "%.0f%% of one core",
                100 * r.orchestrator_cpu_s / absl::ToDoubleSeconds(r.elapsed));
  Add(type, absl::StrCat("orchestrator CPU, ", callers, " callers"), buf);
  std::snprintf(buf, sizeof(buf), "%.0f us (orchestrator %.0f)", r.us_each(), r.us_each(true));
  Add(type, absl::StrCat("CPU per workflow, both processes, ", callers, " callers"), buf);
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  using namespace kiln;
  CLI::App app{"kiln-engine-bench: end-to-end engine benchmark"};
  double duration_s = 20;
  int sequential = 500;
  int scale = 100'000;
  std::vector<std::string> only = {"rpc", "a", "b", "scale"};
  app.add_option("--duration", duration_s, "Seconds per throughput run")->capture_default_str();
  app.add_option("--sequential", sequential, "Workflows in the sequential run")
      ->capture_default_str();
  app.add_option("--scale", scale, "Open workflows in the scale run")->capture_default_str();
  app.add_option("--only", only, "Scenarios: rpc, a, b, scale")
      ->delimiter(',')
      ->check(CLI::IsMember({"rpc", "a", "b", "scale"}))
      ->capture_default_str();
  int pollers = 4;
  app.add_option("--pollers", pollers, "Workflow pollers, and activity pollers, of the worker")
      ->capture_default_str();
  bool eager = true;
  app.add_option("--eager-activities", eager, "Ask for activities to be started eagerly")
      ->capture_default_str();
  bool speculative = true;
  app.add_option("--speculative", speculative,
                 "Run workflow tasks ahead: the first with an eager start, the next with its "
                 "activity's completion (with eager activities)")
      ->capture_default_str();
  bool eager_start = true;
  app.add_option("--eager-start", eager_start,
                 "Start workflows eagerly (their first task runs on the caller's thread)")
      ->capture_default_str();
  std::vector<std::string> orchestrator_args;
  app.add_option("--orchestrator-arg", orchestrator_args,
                 "Extra kiln-orchestrator flag, e.g. --start-at-schedule=false (repeatable)");
  CLI11_PARSE(app, argc, argv);
  ConfigureMutexes();

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data", orchestrator_args);
  if (absl::Status s = orchestrator.Start(); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  pid_t pid = orchestrator.pid();
  sdk::Connection connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  sdk::ActivityWorkerOptions aopts;
  aopts.pollers = pollers;
  // A slot for each of the 64 callers' activities, plus one per poller (a poller holds one while
  // it waits): every activity then starts eagerly and the run never leaves this process.
  aopts.max_concurrent = 64 + pollers;
  sdk::ActivityWorker activities(connection, "bench", aopts);
  absl::Status ready = activities.Register(
      "Noop",
      [](sdk::ActivityContext&,
         const sdk::api::Payloads& input) -> absl::StatusOr<sdk::api::Payloads> { return input; });
  if (ready.ok()) ready = activities.Start();
  if (!ready.ok()) {
    std::cerr << ready << "\n";
    return 1;
  }
  sdk::WorkflowWorkerOptions wopts;
  wopts.pollers = pollers;
  wopts.cache_size = 5000;
  if (eager) wopts.eager_activities = &activities;
  wopts.speculative_tasks = speculative;
  sdk::WorkflowWorker workflows(connection, "bench", wopts);
  workflows.Register("a", bench::One);
  workflows.Register("b", bench::Three);
  workflows.Register("scale", bench::Sleeper);
  workflows.Start();
  if (eager_start) bench::eager_worker = &workflows;

  auto wanted = [&](const std::string& name) {
    return std::find(only.begin(), only.end(), name) != only.end();
  };
  if (wanted("rpc")) {
    bench::RpcFloor(connection, sequential);
    bench::RpcCeiling(connection, pid, 64, absl::Seconds(std::min(duration_s, 10.0)));
  }
  const int64_t speculative_before = workflows.speculative_accepted();
  const int64_t refused_before = workflows.speculative_refused();
  const int64_t tasks_before = workflows.tasks_completed();
  for (const std::string type : {"a", "b"}) {
    if (!wanted(type)) continue;
    std::cerr << "workflow (" << type << ")\n";
    bench::Sequential(connection, type, sequential);
    for (int callers : {16, 64}) {
      bench::Throughput(connection, pid, type, callers, absl::Seconds(duration_s));
    }
  }
  if (wanted("a") || wanted("b")) {
    const int64_t tasks = workflows.tasks_completed() - tasks_before;
    const int64_t accepted = workflows.speculative_accepted() - speculative_before;
    const int64_t refused = workflows.speculative_refused() - refused_before;
    bench::Add("all", "workflow tasks run ahead (with the start or their activity's completion)",
               absl::StrCat(accepted, " of ", tasks, " (", refused, " refused)"));
  }
  bench::Add("all", "orchestrator peak RSS",
             absl::StrCat(bench::ReadProc(pid).peak_rss_kib / 1024, " MiB"));

  if (wanted("scale")) {
    std::cerr << "scale: " << scale << " workflows on a one-hour timer\n";
    std::atomic<int64_t> started{0};
    int64_t tasks_before = workflows.tasks_completed();
    absl::Time begin = absl::Now();
    std::vector<std::thread> threads;
    for (int t = 0; t < 32; ++t) {
      threads.emplace_back([&] {
        sdk::Client client(connection);
        for (;;) {
          int64_t i = started.fetch_add(1);
          if (i >= scale) break;
          sdk::StartWorkflowOptions options;
          options.id = absl::StrCat("sleeper-", i);
          options.task_queue = "bench";
          (void)client.StartWorkflow(options, "scale", sdk::ToPayloads(std::string("z")));
        }
      });
    }
    for (auto& t : threads) t.join();
    absl::Duration start_time = absl::Now() - begin;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.0f starts/s", scale / absl::ToDoubleSeconds(start_time));
    bench::Add("scale", "start rate (32 callers)", buf);
    // Wait until every workflow has started its timer (its first task answered).
    while (workflows.tasks_completed() - tasks_before < scale &&
           absl::Now() - begin < absl::Minutes(20)) {
      absl::SleepFor(absl::Milliseconds(200));
    }
    std::snprintf(buf, sizeof(buf), "%.1f s", absl::ToDoubleSeconds(absl::Now() - begin));
    bench::Add("scale", "all timers started after", buf);
    bench::Add("scale", "orchestrator RSS with all open",
               absl::StrCat(bench::ReadProc(pid).rss_kib / 1024, " MiB"));
    workflows.Stop();
    activities.Stop();
    (void)orchestrator.Stop();
    absl::Time restart = absl::Now();
    if (absl::Status s = orchestrator.Start(); !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    bench::Add("scale", "restart to serving", bench::Ms(absl::Now() - restart));
    sdk::Client client(connection);
    auto described = client.Describe({"sleeper-0", ""});
    bench::Add("scale", "open run readable after restart",
               described.ok() ? "yes" : std::string(described.status().message()));
    bench::Add("scale", "orchestrator RSS after restart",
               absl::StrCat(bench::ReadProc(orchestrator.pid()).rss_kib / 1024, " MiB"));
  } else {
    workflows.Stop();
    activities.Stop();
  }

  std::cout << "\nkiln engine benchmark\n\n"
            << "Method: kiln-orchestrator as its own process (RocksDB, WAL fsync on every\n"
            << "transition); in this process a workflow worker (" << pollers
            << " pollers) and an activity worker\n(" << pollers << " pollers, "
            << aopts.max_concurrent
            << " slots) from the C++ SDK, and closed-loop callers: each starts a\n"
            << "workflow and waits for its result (from the completion that closed it, or a long\n"
            << "poll on history) before the next. (a) one\n"
            << "activity, (b) three sequential activities; the activity returns its input.\n"
            << "Eager start " << (eager_start ? "on" : "off") << ", eager activities "
            << (eager ? "on" : "off") << ", tasks run ahead " << (speculative ? "on" : "off")
            << " (the first with the start, each next\none with its activity's completion); "
            << "orchestrator flags:"
            << (orchestrator_args.empty() ? std::string(" none")
                                          : " " + absl::StrJoin(orchestrator_args, " "))
            << ".\n"
            << "Throughput runs measure " << duration_s << " s after a 2 s warm-up. All on "
            << std::thread::hardware_concurrency() << " cores, loopback gRPC.\n"
            << "rpc: Describe of a cached run (no write), one caller, then 64 in closed loops\n"
            << "for up to 10 s. CPU from /proc (user + system); \"CPU per workflow\" adds both\n"
            << "processes' and divides by the workflows completed.\n\n";
  std::cout << "| scenario | metric | value |\n| --- | --- | --- |\n";
  for (const auto& row : bench::rows) {
    std::cout << "| " << row.scenario << " | " << row.metric << " | " << row.value << " |\n";
  }
  return 0;
}
