// What the engine benchmark reads about the processes it measures: CPU and memory from /proc,
// context switches summed over a process's threads, and the orchestrator's per-method RPC
// counters from its Prometheus text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

namespace kiln::bench {

struct ProcStats {
  int64_t rss_kib = 0;
  int64_t peak_rss_kib = 0;
  // User + system, every thread of the process (/proc/PID/stat utime + stime).
  double cpu_seconds = 0;
};
// Zeros for pid 0 or a process that is gone.
ProcStats ReadProc(pid_t pid);

// CPU seconds of `pid` and of its children alive now (a PostgreSQL server: the postmaster and
// its backends, which live as long as their connections). 0 for pid 0.
double ReadTreeCpu(pid_t pid);

struct Switches {
  int64_t voluntary = 0;
  int64_t involuntary = 0;
};
// Summed over the threads alive now (/proc/PID/task/*/status): /proc/PID/status alone counts
// the main thread only. A thread that ended between two readings is missed.
Switches ReadSwitches(pid_t pid);

// By the value of `label` (e.g. "method"): the samples of `metric` summed over its other labels
// (e.g. the status code), from a Prometheus text exposition. `metric` is matched whole, so
// "kiln_rpc_latency_seconds_sum" does not take "..._bucket" lines.
std::map<std::string, double> SumByLabel(const std::string& metrics_text, const std::string& metric,
                                         const std::string& label);
// The sample of a metric with no labels (a line "<metric> <value>"); 0 when there is none.
double Scalar(const std::string& metrics_text, const std::string& metric);

}  // namespace kiln::bench
