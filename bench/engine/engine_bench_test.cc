// The engine benchmark's own parts: what it reads from /proc and /metrics, its role processes
// (started, ready, stopped), and its decoupled shape run for real: the workers in processes of
// their own, none left behind when it ends or when it is killed.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/engine/proc_stats.h"
#include "bench/engine/role_process.h"
#include "tests/testutil/process.h"

namespace kiln::bench {
namespace {

TEST_CASE("SumByLabel sums one metric's samples by one label") {
  const std::string text =
      "# HELP kiln_rpc_requests_total WorkflowService calls\n"
      "kiln_rpc_requests_total{code=\"OK\",method=\"Start\"} 3\n"
      "kiln_rpc_requests_total{code=\"NOT_FOUND\",method=\"Start\"} 2\n"
      "kiln_rpc_requests_total{method=\"Poll\",code=\"OK\"} 1e3\n"
      "kiln_rpc_requests_total_other{method=\"Start\"} 100\n"
      "kiln_rpc_latency_seconds_sum{method=\"Start\"} 0.5\n"
      "kiln_rpc_latency_seconds_bucket{method=\"Start\",le=\"0.1\"} 4\n";
  auto requests = SumByLabel(text, "kiln_rpc_requests_total", "method");
  CHECK(requests.size() == 2);
  CHECK(requests["Start"] == 5);
  CHECK(requests["Poll"] == 1000);
  auto seconds = SumByLabel(text, "kiln_rpc_latency_seconds_sum", "method");
  CHECK(seconds.size() == 1);
  CHECK(seconds["Start"] == Approx(0.5));
  CHECK(SumByLabel(text, "kiln_rpc_requests_total", "op").empty());
}

TEST_CASE("ReadProc and ReadSwitches read a live process and give zeros for none") {
  volatile double sink = 0;
  for (int i = 0; i < 20'000'000; ++i) sink = sink + i;  // some CPU to see
  Switches before = ReadSwitches(getpid());
  for (int i = 0; i < 3; ++i) ::usleep(1000);  // each sleep gives the CPU up: a switch
  Switches after = ReadSwitches(getpid());
  CHECK(after.voluntary >= before.voluntary + 3);
  ProcStats self = ReadProc(getpid());
  CHECK(self.cpu_seconds > 0);
  CHECK(self.rss_kib > 0);
  CHECK(ReadProc(0).cpu_seconds == 0);
  CHECK(ReadSwitches(0).voluntary == 0);
}

// Not a test: what RoleProcess runs (this binary again, with this hidden test's name), a role
// that says it is ready and serves until SIGTERM.
TEST_CASE("role helper", "[.role-helper]") {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  REQUIRE(::write(RoleProcess::kReadyFd, "ready\n", 6) == 6);
  int signal_number = 0;
  sigwait(&stop, &signal_number);
}

TEST_CASE("A role process is ready when it says so and stops on SIGTERM") {
  testutil::TempDir dir;
  auto role =
      RoleProcess::Start({"[.role-helper]"}, {}, dir.path() + "/role.log", absl::Seconds(30));
  REQUIRE(role.ok());
  const pid_t pid = (*role)->pid();
  CHECK(::kill(pid, 0) == 0);
  auto code = (*role)->Stop(absl::Seconds(30));
  REQUIRE(code.ok());
  CHECK(*code == 0);
  CHECK(::kill(pid, 0) != 0);  // reaped: gone
}

TEST_CASE("A role process that exits before it is ready is an error with its log") {
  testutil::TempDir dir;
  auto role =
      RoleProcess::Start({"--no-such-flag"}, {}, dir.path() + "/role.log", absl::Seconds(30));
  REQUIRE_FALSE(role.ok());
  CHECK(absl::StrContains(role.status().message(), "not ready"));
  CHECK(absl::StrContains(role.status().message(), "no-such-flag"));
}

// Processes whose environment holds `mark` (the benchmark's children inherit it).
std::vector<pid_t> Marked(const std::string& mark) {
  std::vector<pid_t> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    pid_t pid = 0;
    const std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid = std::stoi(name);
    std::ifstream environ(entry.path() / "environ");
    std::string content((std::istreambuf_iterator<char>(environ)),
                        std::istreambuf_iterator<char>());
    if (absl::StrContains(content, mark)) found.push_back(pid);
  }
  return found;
}

// Marked processes running this benchmark binary in a hidden role.
int RoleProcesses(const std::string& mark) {
  int roles = 0;
  for (pid_t pid : Marked(mark)) {
    std::string cmdline = testutil::ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (absl::StrContains(cmdline, "--role")) ++roles;
  }
  return roles;
}

std::string NewMark() {
  std::random_device random;
  return absl::StrCat("KILN_BENCH_TEST_MARK=", random(), "-", getpid());
}

TEST_CASE("The decoupled shape runs its workers in processes of their own and stops them") {
  testutil::TempDir dir;
  const std::string mark = NewMark();
  auto bench = testutil::Process::Start(
      testutil::BinaryPath("kiln-engine-bench"),
      {"--topology", "decoupled", "--only", "a", "--duration", "1", "--sequential", "5"},
      dir.path() + "/bench.log", {mark});
  REQUIRE(bench.ok());
  auto code = (*bench)->Wait(absl::Minutes(2));
  const std::string output = (*bench)->Output();
  INFO(output);
  REQUIRE(code.ok());
  CHECK(*code == 0);
  CHECK(absl::StrContains(output, "| scenario | metric | decoupled |"));
  CHECK(absl::StrContains(output, "| a | throughput, 64 callers |"));
  CHECK(absl::StrContains(output, "+ wf worker "));
  CHECK(absl::StrContains(output, "| a, 64 callers | WorkerStream.RespondActivityTaskCompleted |"));
  CHECK(Marked(mark).empty());
}

// A decoupled benchmark with `mark` in its environment and its temporary data under `dir`,
// returned once both of its workers run.
std::unique_ptr<testutil::Process> StartDecoupled(const testutil::TempDir& dir,
                                                  const std::string& mark) {
  auto bench = testutil::Process::Start(
      testutil::BinaryPath("kiln-engine-bench"),
      {"--topology", "decoupled", "--only", "a", "--duration", "30", "--sequential", "5"},
      dir.path() + "/bench.log", {mark, "TMPDIR=" + dir.path()});
  REQUIRE(bench.ok());
  REQUIRE(testutil::WaitFor([&] { return RoleProcesses(mark) == 2; }, absl::Seconds(60)));
  return std::move(*bench);
}

TEST_CASE("Killing the benchmark takes its worker processes with it") {
  testutil::TempDir dir;
  const std::string mark = NewMark();
  // Killed, the benchmark leaves its data directory: made under this test's, it goes with it.
  auto bench = StartDecoupled(dir, mark);
  bench->Signal(SIGKILL);
  CHECK(bench->Wait(absl::Seconds(10)).ok());
  CHECK(testutil::WaitFor([&] { return Marked(mark).empty(); }, absl::Seconds(30)));
}

// Entries of `dir` (the benchmark's TMPDIR), its own log aside.
std::vector<std::string> TempEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename() != "bench.log") names.push_back(entry.path().filename());
  }
  return names;
}

TEST_CASE("Interrupted, the benchmark stops its processes and removes its data") {
  for (int signo : {SIGINT, SIGTERM}) {
    DYNAMIC_SECTION("signal " << signo) {
      testutil::TempDir dir;
      const std::string mark = NewMark();
      auto bench = StartDecoupled(dir, mark);
      REQUIRE(TempEntries(dir.path()).size() == 1);  // the orchestrator's data directory
      bench->Signal(signo);
      auto code = bench->Wait(absl::Seconds(30));
      const std::string output = bench->Output();
      INFO(output);
      REQUIRE(code.ok());
      CHECK(*code == 128 + signo);
      CHECK(absl::StrContains(output, "3 child processes killed, 1 temporary directories removed"));
      // Gone by the time it exits: the orchestrator and the workers, and the data.
      CHECK(Marked(mark).empty());
      CHECK(TempEntries(dir.path()).empty());
    }
  }
}

}  // namespace
}  // namespace kiln::bench
