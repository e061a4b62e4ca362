// The engine benchmark: a real kiln-orchestrator (RocksDB, WAL synced on every transition; or
// PostgreSQL with --stores) and
// closed-loop callers over gRPC on 127.0.0.1, in one of two shapes:
//   single     the callers, a workflow worker and an activity worker in this process, where
//              every fast path (eager start, eager activities, tasks run ahead) keeps a run in
//              it;
//   decoupled  the callers here, the workflow worker and the activity worker each in a process
//              of its own (this binary again, with the hidden --role): every step goes through
//              the orchestrator, as with services, kiln-worker and builder agents.
// Prints one table (a column per round; --topology both alternates the shapes) and its method.
// See docs/benchmarks.md.
//
//   kiln-engine-bench [--duration 20] [--sequential 500] [--scale 100000] [--only rpc,a,b,scale]
//                     [--topology single|decoupled|both] [--rounds 1] [--stores rocksdb,postgres]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/engine/proc_stats.h"
#include "bench/engine/role_process.h"
#include "bench/engine/workload.h"
#include "common/config.h"
#include "common/hop_trace.h"
#include "sdk/activity_worker.h"
#include "sdk/client.h"
#include "sdk/converter.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/postgres.h"
#include "tests/testutil/process.h"

namespace kiln::bench {
namespace {

enum class Shape { kSingle, kDecoupled };
const char* NameOf(Shape shape) { return shape == Shape::kSingle ? "single" : "decoupled"; }

// Rows by (scenario, metric) in the order they first came, a column per round.
class Table {
 public:
  void StartColumn(std::string name) { columns_.push_back(std::move(name)); }
  void Add(const std::string& scenario, const std::string& metric, std::string value) {
    std::cerr << "  " << scenario << ": " << metric << " = " << value << "\n";
    auto key = std::make_pair(scenario, metric);
    if (!values_.contains(key)) order_.push_back(key);
    values_[key][columns_.size() - 1] = std::move(value);
  }
  bool empty() const { return order_.empty(); }
  // `sorted`: rows by (scenario, metric) rather than in the order they came.
  void Print(std::ostream& out, const std::string& first, const std::string& second,
             bool sorted = false) const {
    std::vector<std::pair<std::string, std::string>> order = order_;
    if (sorted) std::sort(order.begin(), order.end());
    out << "| " << first << " | " << second << " |";
    for (const auto& column : columns_) out << " " << column << " |";
    out << "\n| --- | --- |";
    for (size_t i = 0; i < columns_.size(); ++i) out << " --- |";
    out << "\n";
    for (const auto& key : order) {
      out << "| " << key.first << " | " << key.second << " |";
      const auto& row = values_.at(key);
      for (size_t i = 0; i < columns_.size(); ++i) {
        auto it = row.find(i);
        out << " " << (it == row.end() ? "–" : it->second) << " |";
      }
      out << "\n";
    }
  }

 private:
  std::vector<std::string> columns_;
  std::vector<std::pair<std::string, std::string>> order_;
  std::map<std::pair<std::string, std::string>, std::map<size_t, std::string>> values_;
};
Table results;
// Per throughput run at 64 callers: the RPCs the orchestrator answered, per workflow.
Table rpcs;

void Add(const std::string& scenario, const std::string& metric, std::string value) {
  results.Add(scenario, metric, std::move(value));
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

// The processes a round charges its workflows' CPU to, and where the orchestrator's metrics
// are served.
struct Processes {
  Shape shape = Shape::kSingle;
  pid_t orchestrator = 0;
  pid_t callers = 0;          // this process; in the single shape it holds both workers too
  pid_t workflow_worker = 0;  // decoupled only
  pid_t activity_worker = 0;  // decoupled only
  pid_t database = 0;         // the PostgreSQL server's postmaster (--stores postgres)
  int metrics_port = 0;
};

// Counters of a round's processes at one moment; the difference of two is what happened
// between them.
struct Sample {
  double orchestrator_cpu_s = 0, callers_cpu_s = 0, workflow_worker_cpu_s = 0,
         activity_worker_cpu_s = 0;
  double database_cpu_s = 0;  // not in total_cpu_s: shown beside it
  Switches orchestrator_switches;
  std::map<std::string, double> rpcs;         // kiln_rpc_requests_total by method
  std::map<std::string, double> rpc_seconds;  // kiln_rpc_latency_seconds_sum by method
  double commits = 0;                         // transitions committed (synced, grouped)
  double groups = 0;     // RocksDB's group commits: one fsync each (0 on PostgreSQL)
  double on_caller = 0;  // of those, written by the committing thread (CommitOnCaller)

  double total_cpu_s() const {
    return orchestrator_cpu_s + callers_cpu_s + workflow_worker_cpu_s + activity_worker_cpu_s;
  }
};

Sample TakeSample(const Processes& processes) {
  Sample sample;
  sample.orchestrator_cpu_s = ReadProc(processes.orchestrator).cpu_seconds;
  sample.callers_cpu_s = ReadProc(processes.callers).cpu_seconds;
  sample.workflow_worker_cpu_s = ReadProc(processes.workflow_worker).cpu_seconds;
  sample.activity_worker_cpu_s = ReadProc(processes.activity_worker).cpu_seconds;
  sample.database_cpu_s = ReadTreeCpu(processes.database);
  sample.orchestrator_switches = ReadSwitches(processes.orchestrator);
  if (processes.metrics_port != 0) {
    auto text = testutil::HttpGet("127.0.0.1", processes.metrics_port, "/metrics");
    if (text.ok()) {
      sample.rpcs = SumByLabel(*text, "kiln_rpc_requests_total", "method");
      sample.rpc_seconds = SumByLabel(*text, "kiln_rpc_latency_seconds_sum", "method");
      auto ops = SumByLabel(*text, "kiln_persistence_latency_seconds_count", "op");
      sample.commits = ops["commit"];
      sample.groups = Scalar(*text, "kiln_store_commit_groups_total");
      sample.on_caller = Scalar(*text, "kiln_store_commits_on_caller_total");
    }
  }
  return sample;
}

Sample Minus(const Sample& after, const Sample& before) {
  Sample delta;
  delta.orchestrator_cpu_s = after.orchestrator_cpu_s - before.orchestrator_cpu_s;
  delta.callers_cpu_s = after.callers_cpu_s - before.callers_cpu_s;
  delta.workflow_worker_cpu_s = after.workflow_worker_cpu_s - before.workflow_worker_cpu_s;
  delta.activity_worker_cpu_s = after.activity_worker_cpu_s - before.activity_worker_cpu_s;
  delta.database_cpu_s = after.database_cpu_s - before.database_cpu_s;
  delta.orchestrator_switches.voluntary =
      after.orchestrator_switches.voluntary - before.orchestrator_switches.voluntary;
  delta.orchestrator_switches.involuntary =
      after.orchestrator_switches.involuntary - before.orchestrator_switches.involuntary;
  delta.commits = after.commits - before.commits;
  delta.groups = after.groups - before.groups;
  delta.on_caller = after.on_caller - before.on_caller;
  for (const auto& [method, count] : after.rpcs) {
    auto it = before.rpcs.find(method);
    delta.rpcs[method] = count - (it == before.rpcs.end() ? 0 : it->second);
  }
  for (const auto& [method, seconds] : after.rpc_seconds) {
    auto it = before.rpc_seconds.find(method);
    delta.rpc_seconds[method] = seconds - (it == before.rpc_seconds.end() ? 0 : it->second);
  }
  return delta;
}

std::atomic<int64_t> next_id{0};
// Set: starts are eager (the first workflow task runs on the caller's thread).
sdk::EagerWorkflowTaskRunner* eager_worker = nullptr;

// Set: the callers use Client::Execute (the start waits for the close and carries the result);
// otherwise StartWorkflow, then GetResult's long poll on history.
bool start_and_wait = true;

absl::Status RunOne(sdk::Client& client, const std::string& type) {
  sdk::StartWorkflowOptions options;
  options.id = absl::StrCat("bench-", next_id.fetch_add(1));
  options.task_queue = kTaskQueue;
  options.eager_worker = eager_worker;
  if (start_and_wait) {
    return client.Execute(options, type, sdk::ToPayloads(std::string("x")), absl::Seconds(60))
        .status();
  }
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
    hoptrace::Mark("c.start");
    absl::Status status = RunOne(client, type);
    hoptrace::Mark("c.done");
    if (!status.ok()) {
      std::cerr << "workflow failed: " << status << "\n";
      continue;
    }
    latencies.push_back(absl::Now() - start);
  }
  if (latencies.empty()) return;
  Add(type, absl::StrCat("sequential p50 (", count, " workflows)"),
      Ms(Percentile(latencies, 0.50)));
  Add(type, "sequential p99", Ms(Percentile(latencies, 0.99)));
}

// The floor under every step: one RPC that reads a cached run and writes nothing.
void RpcFloor(sdk::Connection& connection, int count) {
  sdk::Client client(connection);
  sdk::StartWorkflowOptions options;
  options.id = "bench-floor";
  options.task_queue = kTaskQueue;
  auto handle = client.StartWorkflow(options, "a", sdk::ToPayloads(std::string("x")));
  if (!handle.ok() || !client.GetResult(*handle, absl::Seconds(60)).ok()) return;
  std::vector<absl::Duration> latencies;
  for (int i = 0; i < count; ++i) {
    absl::Time start = absl::Now();
    if (!client.Describe(*handle).ok()) continue;
    latencies.push_back(absl::Now() - start);
  }
  if (latencies.empty()) return;
  Add("rpc", absl::StrCat("read-only RPC round trip p50 (Describe, ", count, " calls)"),
      Ms(Percentile(latencies, 0.50)));
}

// What a closed-loop run measured: calls that succeeded and failed while measuring, over
// `elapsed`, and what the round's processes did meanwhile.
struct LoopResult {
  int64_t done = 0;
  int64_t failed = 0;
  absl::Duration elapsed;
  Sample used;

  double rate() const { return static_cast<double>(done) / absl::ToDoubleSeconds(elapsed); }
  // Per successful call.
  double each(double total) const { return done == 0 ? 0 : total / static_cast<double>(done); }
  double us_each(double cpu_s) const { return 1e6 * each(cpu_s); }
};

// `callers` threads each calling `call` back to back; measures `duration` after `warm_up`.
// `call` gets the caller's own client.
LoopResult ClosedLoop(sdk::Connection& connection, const Processes& processes, int callers,
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
  Sample before = TakeSample(processes);
  measuring = true;
  absl::Time start = absl::Now();
  absl::SleepFor(duration);
  measuring = false;
  LoopResult result;
  result.elapsed = absl::Now() - start;
  Sample after = TakeSample(processes);
  stop = true;
  for (auto& t : threads) t.join();
  result.done = done.load();
  result.failed = failed.load();
  result.used = Minus(after, before);
  return result;
}

// The ceiling over every throughput figure: `callers` closed loops of the same read-only RPC,
// and what one costs in CPU (the orchestrator and the callers). A workflow takes at least one
// RPC per transition.
void RpcCeiling(sdk::Connection& connection, const Processes& processes, int callers,
                absl::Duration duration) {
  sdk::WorkflowHandle handle;
  handle.workflow_id = "bench-floor";
  LoopResult r = ClosedLoop(connection, processes, callers, absl::Seconds(1), duration,
                            [&](sdk::Client& client) { return client.Describe(handle).status(); });
  Add("rpc", absl::StrCat("read-only RPC throughput (Describe, ", callers, " callers)"),
      absl::StrFormat("%.0f RPCs/s, %.0f us CPU each (orchestrator + callers)", r.rate(),
                      r.us_each(r.used.orchestrator_cpu_s + r.used.callers_cpu_s)));
}

void Throughput(sdk::Connection& connection, const Processes& processes, const std::string& type,
                int callers, absl::Duration duration) {
  LoopResult r = ClosedLoop(connection, processes, callers, absl::Seconds(2), duration,
                            [&](sdk::Client& client) { return RunOne(client, type); });
  const std::string run = absl::StrCat(callers, " callers");
  Add(type, absl::StrCat("throughput, ", run),
      absl::StrFormat("%.0f workflows/s (%.0f failed)", r.rate(), static_cast<double>(r.failed)));
  Add(type, absl::StrCat("orchestrator CPU, ", run),
      absl::StrFormat("%.0f%% of one core",
                      100 * r.used.orchestrator_cpu_s / absl::ToDoubleSeconds(r.elapsed)));
  const Sample& u = r.used;
  Add(type, absl::StrCat("CPU us per workflow, ", run),
      processes.shape == Shape::kSingle
          ? absl::StrFormat("%.0f = orch. %.0f + callers with both workers %.0f",
                            r.us_each(u.total_cpu_s()), r.us_each(u.orchestrator_cpu_s),
                            r.us_each(u.callers_cpu_s))
          : absl::StrFormat("%.0f = orch. %.0f + callers %.0f + wf worker %.0f + act. worker %.0f",
                            r.us_each(u.total_cpu_s()), r.us_each(u.orchestrator_cpu_s),
                            r.us_each(u.callers_cpu_s), r.us_each(u.workflow_worker_cpu_s),
                            r.us_each(u.activity_worker_cpu_s)));
  if (processes.database != 0) {
    Add(type, absl::StrCat("PostgreSQL CPU, ", run),
        absl::StrFormat("%.0f%% of one core, %.0f us per workflow",
                        100 * u.database_cpu_s / absl::ToDoubleSeconds(r.elapsed),
                        r.us_each(u.database_cpu_s)));
  }
  double rpc_count = 0;
  for (const auto& [method, count] : u.rpcs) rpc_count += count;
  Add(type, absl::StrCat("orchestrator RPCs per workflow, ", run),
      absl::StrFormat("%.2f (%.0f us CPU each)", r.each(rpc_count),
                      rpc_count == 0 ? 0 : 1e6 * u.orchestrator_cpu_s / rpc_count));
  const double switches =
      static_cast<double>(u.orchestrator_switches.voluntary + u.orchestrator_switches.involuntary);
  Add(type, absl::StrCat("orchestrator commits, context switches per workflow, ", run),
      absl::StrFormat("%.2f, %.1f (%.1f voluntary)", r.each(u.commits), r.each(switches),
                      r.each(static_cast<double>(u.orchestrator_switches.voluntary))));
  if (u.groups > 0) {
    Add(type, absl::StrCat("orchestrator commits per fsync, ", run),
        absl::StrFormat("%.2f (%.1f%% of fsyncs by the committing thread)", u.commits / u.groups,
                        100 * u.on_caller / u.groups));
  }
  if (callers != 64) return;
  for (const auto& [method, count] : u.rpcs) {
    if (count <= 0) continue;
    auto seconds = u.rpc_seconds.find(method);
    double mean_ms = seconds == u.rpc_seconds.end() ? 0 : 1e3 * seconds->second / count;
    rpcs.Add(absl::StrCat(type, ", ", run), method,
             absl::StrFormat("%.2f (%.2f ms)", r.each(count), mean_ms));
  }
}

struct Settings {
  double duration_s = 20;
  int sequential = 500;
  int scale = 100'000;
  std::vector<std::string> only;
  int pollers = 4;
  bool eager_activities = true;
  bool speculative = true;
  bool eager_start = true;
  std::vector<std::string> orchestrator_args;

  bool wanted(const std::string& name) const {
    return std::find(only.begin(), only.end(), name) != only.end();
  }
};

// The scale scenario (single shape): `scale` workflows each on a one-hour timer, then a
// restart of the orchestrator on the same data directory.
absl::Status Scale(const Settings& settings, testutil::OrchestratorProcess& orchestrator,
                   sdk::Connection& connection, sdk::WorkflowWorker& workflows,
                   sdk::ActivityWorker& activities) {
  const int scale = settings.scale;
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
        options.task_queue = kTaskQueue;
        (void)client.StartWorkflow(options, "scale", sdk::ToPayloads(std::string("z")));
      }
    });
  }
  for (auto& t : threads) t.join();
  absl::Duration start_time = absl::Now() - begin;
  Add("scale", "start rate (32 callers)",
      absl::StrFormat("%.0f starts/s", scale / absl::ToDoubleSeconds(start_time)));
  // Wait until every workflow has started its timer (its first task answered).
  while (workflows.tasks_completed() - tasks_before < scale &&
         absl::Now() - begin < absl::Minutes(20)) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  Add("scale", "all timers started after",
      absl::StrFormat("%.1f s", absl::ToDoubleSeconds(absl::Now() - begin)));
  Add("scale", "orchestrator RSS with all open",
      absl::StrCat(ReadProc(orchestrator.pid()).rss_kib / 1024, " MiB"));
  workflows.Stop();
  activities.Stop();
  (void)orchestrator.Stop();
  absl::Time restart = absl::Now();
  if (absl::Status s = orchestrator.Start(); !s.ok()) return s;
  Add("scale", "restart to serving", Ms(absl::Now() - restart));
  sdk::Client client(connection);
  auto described = client.Describe({"sleeper-0", ""});
  Add("scale", "open run readable after restart",
      described.ok() ? "yes" : std::string(described.status().message()));
  Add("scale", "orchestrator RSS after restart",
      absl::StrCat(ReadProc(orchestrator.pid()).rss_kib / 1024, " MiB"));
  return absl::OkStatus();
}

// The scenarios both shapes run: (a) and (b), sequential then 16 and 64 callers.
void Workflows(const Settings& settings, sdk::Connection& connection, const Processes& processes) {
  for (const std::string type : {"a", "b"}) {
    if (!settings.wanted(type)) continue;
    std::cerr << "workflow (" << type << ")\n";
    Sequential(connection, type, settings.sequential);
    for (int callers : {16, 64}) {
      Throughput(connection, processes, type, callers, absl::Seconds(settings.duration_s));
    }
  }
}

// One round: a fresh orchestrator on a fresh data directory, the workers in `shape`, the
// scenarios; everything it started is stopped before it returns, on every path.
absl::Status RunRound(Shape shape, const Settings& settings, bool with_rpc, bool with_scale) {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data", settings.orchestrator_args);
  if (absl::Status s = orchestrator.Start(); !s.ok()) return s;
  sdk::Connection connection(orchestrator.address(), {.token = orchestrator.admin_token()});
  Processes processes{
      .shape = shape,
      .orchestrator = orchestrator.pid(),
      .callers = getpid(),
      .database = orchestrator.store().empty() ? 0 : testutil::TestClusterPostmaster(),
      .metrics_port = orchestrator.metrics_port()};

  std::vector<std::string> types = {"a", "b", "scale"};
  std::unique_ptr<sdk::ActivityWorker> activities;
  std::unique_ptr<sdk::WorkflowWorker> workflows;
  std::unique_ptr<RoleProcess> workflow_process, activity_process;
  eager_worker = nullptr;
  if (shape == Shape::kSingle) {
    sdk::ActivityWorkerOptions aopts;
    aopts.pollers = settings.pollers;
    aopts.max_concurrent = ActivitySlots(settings.pollers);
    activities = std::make_unique<sdk::ActivityWorker>(connection, kTaskQueue, aopts);
    absl::Status ready = RegisterActivities(*activities);
    if (ready.ok()) ready = activities->Start();
    if (!ready.ok()) return ready;
    sdk::WorkflowWorkerOptions wopts;
    wopts.pollers = settings.pollers;
    wopts.cache_size = 5000;
    if (settings.eager_activities) wopts.eager_activities = activities.get();
    wopts.speculative_tasks = settings.speculative;
    workflows = std::make_unique<sdk::WorkflowWorker>(connection, kTaskQueue, wopts);
    if (absl::Status s = RegisterWorkflows(*workflows, types); !s.ok()) return s;
    workflows->Start();
    if (settings.eager_start) eager_worker = workflows.get();
  } else {
    const std::vector<std::string> env = {absl::StrCat(kTokenEnv, "=", orchestrator.admin_token())};
    auto start = [&](const char* role) {
      return RoleProcess::Start(
          {"--address", orchestrator.address(), "--pollers", absl::StrCat(settings.pollers),
           "--workflows", absl::StrJoin(types, ","), "--role", role},
          env, absl::StrCat(dir.path(), "/", role, ".log"), absl::Seconds(60));
    };
    auto wf = start(kWorkflowWorkerRole);
    if (!wf.ok()) return wf.status();
    workflow_process = std::move(*wf);
    auto act = start(kActivityWorkerRole);
    if (!act.ok()) return act.status();
    activity_process = std::move(*act);
    processes.workflow_worker = workflow_process->pid();
    processes.activity_worker = activity_process->pid();
  }

  if (with_rpc) {
    RpcFloor(connection, settings.sequential);
    RpcCeiling(connection, processes, 64, absl::Seconds(std::min(settings.duration_s, 10.0)));
  }
  const int64_t speculative_before = workflows ? workflows->speculative_accepted() : 0;
  const int64_t refused_before = workflows ? workflows->speculative_refused() : 0;
  const int64_t tasks_before = workflows ? workflows->tasks_completed() : 0;
  Workflows(settings, connection, processes);
  if (workflows && (settings.wanted("a") || settings.wanted("b"))) {
    const int64_t tasks = workflows->tasks_completed() - tasks_before;
    const int64_t accepted = workflows->speculative_accepted() - speculative_before;
    const int64_t refused = workflows->speculative_refused() - refused_before;
    Add("all", "workflow tasks run ahead (with the start or their activity's completion)",
        absl::StrCat(accepted, " of ", tasks, " (", refused, " refused)"));
  }
  Add("all", "orchestrator peak RSS",
      absl::StrCat(ReadProc(orchestrator.pid()).peak_rss_kib / 1024, " MiB"));

  if (with_scale) {
    if (absl::Status s = Scale(settings, orchestrator, connection, *workflows, *activities);
        !s.ok()) {
      return s;
    }
  }
  eager_worker = nullptr;
  if (workflows) workflows->Stop();
  if (activities) activities->Stop();
  for (RoleProcess* child : {workflow_process.get(), activity_process.get()}) {
    if (child == nullptr) continue;
    auto code = child->Stop(absl::Seconds(30));
    if (!code.ok()) return code.status();
    if (*code != 0) {
      return absl::InternalError(absl::StrCat("pid ", child->pid(), " exited ", *code));
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();  // Ctrl-C leaves no data or process behind
  using namespace kiln;
  using bench::Shape;
  CLI::App app{"kiln-engine-bench: end-to-end engine benchmark"};
  bench::Settings settings;
  settings.only = {"rpc", "a", "b", "scale"};
  app.add_option("--duration", settings.duration_s, "Seconds per throughput run")
      ->capture_default_str();
  app.add_option("--sequential", settings.sequential, "Workflows in the sequential run")
      ->capture_default_str();
  app.add_option("--scale", settings.scale, "Open workflows in the scale run")
      ->capture_default_str();
  app.add_option("--only", settings.only, "Scenarios: rpc, a, b, scale")
      ->delimiter(',')
      ->check(CLI::IsMember({"rpc", "a", "b", "scale"}))
      ->capture_default_str();
  std::string topology = "single";
  app.add_option("--topology", topology,
                 "single: callers and both workers in this process; decoupled: the workflow "
                 "worker and the activity worker each in a process of its own; both: the two "
                 "alternated, single first (scale runs in the single shape only)")
      ->check(CLI::IsMember({"single", "decoupled", "both"}))
      ->capture_default_str();
  int rounds = 1;
  app.add_option("--rounds", rounds, "Rounds of each shape (with both: single, decoupled, ...)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--pollers", settings.pollers,
                 "Workflow pollers, and activity pollers, of the workers")
      ->capture_default_str();
  app.add_option("--eager-activities", settings.eager_activities,
                 "Ask for activities to be started eagerly (single shape)")
      ->capture_default_str();
  app.add_option("--speculative", settings.speculative,
                 "Run workflow tasks ahead: the first with an eager start, the next with its "
                 "activity's completion (with eager activities; single shape)")
      ->capture_default_str();
  app.add_option("--start-and-wait", bench::start_and_wait,
                 "Callers start and wait in one call (the result with the start's answer) rather "
                 "than start, then long-poll history for the result")
      ->capture_default_str();
  app.add_option("--eager-start", settings.eager_start,
                 "Start workflows eagerly: their first task runs on the caller's thread (single "
                 "shape)")
      ->capture_default_str();
  std::vector<std::string> stores = {"rocksdb"};
  app.add_option("--stores", stores,
                 "The orchestrator's store, alternated in each round: rocksdb (in its data "
                 "directory), postgres (a database on a PostgreSQL 15 cluster this benchmark "
                 "starts in a temp dir, fsync on)")
      ->delimiter(',')
      ->check(CLI::IsMember({"rocksdb", "postgres"}))
      ->capture_default_str();
  app.add_option("--orchestrator-arg", settings.orchestrator_args,
                 "Extra kiln-orchestrator flag, e.g. --start-at-schedule=false (repeatable)");
  // The hidden roles the decoupled shape starts this binary in.
  bench::RoleOptions role;
  app.add_option("--role", role.role)
      ->check(CLI::IsMember({bench::kWorkflowWorkerRole, bench::kActivityWorkerRole}))
      ->group("");
  app.add_option("--address", role.address)->group("");
  app.add_option("--workflows", role.workflows)->delimiter(',')->group("");
  CLI11_PARSE(app, argc, argv);
  ConfigureMutexes();
  if (!role.role.empty()) {
    role.pollers = settings.pollers;
    return bench::RunRole(role);
  }

  // Each round: the shapes, each on every store in turn (alternating, so that a shared
  // machine's load changes weigh on both).
  std::vector<Shape> shapes;
  std::vector<std::string> shape_stores;
  for (int round = 0; round < rounds; ++round) {
    for (Shape shape : {Shape::kSingle, Shape::kDecoupled}) {
      if (shape == Shape::kSingle && topology == "decoupled") continue;
      if (shape == Shape::kDecoupled && topology == "single") continue;
      for (const std::string& store : stores) {
        shapes.push_back(shape);
        shape_stores.push_back(store);
      }
    }
  }
  size_t last_single = shapes.size();
  for (size_t i = 0; i < shapes.size(); ++i) {
    if (shapes[i] == Shape::kSingle) last_single = i;
  }
  if (settings.wanted("scale") && last_single == shapes.size()) {
    std::cerr << "scale: runs in the single shape only; skipped\n";
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::string column = bench::NameOf(shapes[i]);
    if (stores.size() > 1 || shape_stores[i] != "rocksdb") {
      absl::StrAppend(&column, " ", shape_stores[i]);
    }
    if (rounds > 1) absl::StrAppend(&column, " #", i / (shapes.size() / rounds) + 1);
    // tests/testutil/orchestrator.h: the orchestrator's store follows KILN_TEST_STORE.
    if (shape_stores[i] == "postgres") {
      ::setenv("KILN_TEST_STORE", "postgres", 1);
    } else {
      ::unsetenv("KILN_TEST_STORE");
    }
    std::cerr << "== " << column << "\n";
    bench::results.StartColumn(column);
    bench::rpcs.StartColumn(column);
    absl::Status round =
        bench::RunRound(shapes[i], settings,
                        /*with_rpc=*/i == 0 && settings.wanted("rpc"),
                        /*with_scale=*/i == last_single && settings.wanted("scale"));
    if (!round.ok()) {
      std::cerr << column << ": " << round << "\n";
      return 1;
    }
  }

  const int slots = bench::ActivitySlots(settings.pollers);
  std::cout << "\nkiln engine benchmark\n\n"
            << "Method: kiln-orchestrator as its own process (RocksDB, WAL fsync on every\n"
            << "transition; postgres: a fresh database on a PostgreSQL 15 cluster of this\n"
            << "benchmark's, fsync on, the columns alternated), a fresh one on a fresh data\n"
            << "directory for each round; a workflow\n"
            << "worker (" << settings.pollers << " pollers) and an activity worker ("
            << settings.pollers << " pollers, " << slots
            << " slots) from the C++ SDK, and\nclosed-loop callers: each starts a workflow and "
            << "waits for its result (from the completion\nthat closed it, "
            << (bench::start_and_wait ? "or with the start's answer, which waits for the close"
                                      : "or a long poll on history")
            << ") before the next. (a) one activity, (b) three\nsequential activities; "
            << "the activity returns its input. Shapes: single = callers and both\nworkers in "
            << "this process (eager start " << (settings.eager_start ? "on" : "off")
            << ", eager activities " << (settings.eager_activities ? "on" : "off")
            << ", tasks run ahead " << (settings.speculative ? "on" : "off")
            << "); decoupled = the callers\nhere, the workflow worker and the activity worker "
            << "each in a process of its own (no\nfast path can cross them). Orchestrator flags:"
            << (settings.orchestrator_args.empty()
                    ? std::string(" none")
                    : " " + absl::StrJoin(settings.orchestrator_args, " "))
            << ".\nThroughput runs measure " << settings.duration_s
            << " s after a 2 s warm-up. All on " << std::thread::hardware_concurrency()
            << " cores, loopback gRPC.\n"
            << "rpc: Describe of a cached run (no write), one caller, then 64 in closed loops\n"
            << "for up to 10 s. CPU from /proc/PID/stat (user + system) of each process over the\n"
            << "measured window, divided by the workflows completed; context switches summed over\n"
            << "the orchestrator's threads (/proc/PID/task/*/status); RPCs from its /metrics.\n\n";
  bench::results.Print(std::cout, "scenario", "metric");
  if (!bench::rpcs.empty()) {
    std::cout << "\nRPCs the orchestrator answered per workflow, by method (mean latency; a long\n"
              << "poll's includes its wait), at 64 callers:\n\n";
    bench::rpcs.Print(std::cout, "run", "method", /*sorted=*/true);
  }
  return 0;
}
