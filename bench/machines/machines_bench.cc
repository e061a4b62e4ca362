// The builder machines benchmark: how long a wake takes until the agent polls its queue, for
// the microvm provider booting cold and restoring a snapshot, beside the process provider, and
// how long a stop takes until the machine is off. A real kiln-orchestrator; the wakes alternate
// (cold, snapshot, process, cold, ...) so a swing in the machine's speed hits each alike.
//
//   kiln-machines-bench [--rounds 5] [--image build/builder-image]
//
// Method: Wake() is called and the orchestrator's DescribeTaskQueue(project/<id>) polled every
// few ms until a poll of this wake shows ("to polling"); then Stop(): the agent gets SIGTERM
// and exits as it does when its queue drains, a guest unmounts its volume and powers off, QEMU
// exits, and the provider sees the machine asleep ("stop to asleep").
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "worker/machines/microvm_provider.h"
#include "worker/machines/process_provider.h"

namespace kiln::bench {
namespace {

namespace api = ::kiln::api::v1;
namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& why) {
  std::cerr << "kiln-machines-bench: " << why << "\n";
  std::exit(1);
}

// Whether a poller of project/<project> polled at or after `since` (the orchestrator keeps
// listing a poller for a while after its last poll, so presence alone says little).
bool PolledSince(testutil::OrchestratorProcess& orchestrator, const std::string& project,
                 absl::Time since) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name("project/" + project);
  request.set_activity(true);
  api::DescribeTaskQueueResponse response;
  if (!orchestrator.connection()
           .workflow_service()
           .DescribeTaskQueue(&ctx, request, &response)
           .ok()) {
    return false;
  }
  for (const auto& poller : response.pollers()) {
    if (absl::FromUnixSeconds(poller.last_access_time().seconds()) +
            absl::Nanoseconds(poller.last_access_time().nanos()) >=
        since) {
      return true;
    }
  }
  return false;
}

struct Sample {
  double to_polling_ms = 0;
  double stop_ms = 0;
};

Sample Measure(worker::MachineProvider& provider, testutil::OrchestratorProcess& orchestrator,
               const std::string& project, const std::string& token) {
  absl::Time began = absl::Now();
  auto woke = provider.Wake({.project = project, .size = "small", .token = token});
  if (!woke.ok()) Die(absl::StrCat("wake ", project, ": ", woke.status().ToString()));
  Sample sample;
  if (!testutil::WaitFor([&] { return PolledSince(orchestrator, project, began); },
                         absl::Seconds(120))) {
    Die("the agent of " + project + " never polled");
  }
  sample.to_polling_ms = absl::ToDoubleMilliseconds(absl::Now() - began);
  absl::Time stopping = absl::Now();
  if (auto stopped = provider.Stop(project, absl::Seconds(60)); !stopped.ok()) {
    Die(absl::StrCat("stop ", project, ": ", stopped.ToString()));
  }
  sample.stop_ms = absl::ToDoubleMilliseconds(absl::Now() - stopping);
  return sample;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();  // Ctrl-C leaves no data or process behind
  using namespace kiln;
  using namespace kiln::bench;
  CLI::App app("kiln-machines-bench: builder machine wakes, microvm (cold, snapshot) and process");
  int rounds = 5;
  app.add_option("--rounds", rounds, "Wakes of each kind")->check(CLI::Range(1, 100));
  std::string image = (fs::path(testutil::BinaryPath("kiln-builder-agent"))
                           .parent_path()
                           .parent_path()
                           .parent_path() /
                       "builder-image")
                          .string();
  app.add_option("--image", image, "The builder image (make builder-image)");
  bool show_console = false;
  app.add_flag("--show-console", show_console,
               "Print the snapshot machine's console (agent.log) after the last round");
  CLI11_PARSE(app, argc, argv);

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  if (auto started = orchestrator.Start(); !started.ok()) Die(started.ToString());

  worker::MicrovmOptions vm;
  vm.machines_dir = dir.path() + "/vm";
  vm.image_dir = image;
  vm.orchestrator = orchestrator.address();
  vm.volume_bytes = 1 << 30;
  vm.idle_grace = absl::Seconds(60);
  auto microvms = worker::MicrovmMachineProvider::Create(vm);
  if (!microvms.ok()) Die(microvms.status().ToString());
  vm.machines_dir = dir.path() + "/cold";
  vm.snapshots = false;
  auto cold_vms = worker::MicrovmMachineProvider::Create(vm);
  if (!cold_vms.ok()) Die(cold_vms.status().ToString());
  worker::ProcessProviderOptions process;
  process.machines_dir = dir.path() + "/process";
  process.agent_binary = testutil::BinaryPath("kiln-builder-agent");
  process.orchestrator = orchestrator.address();
  process.idle_grace = absl::Seconds(60);
  auto processes = worker::ProcessMachineProvider::Create(process);
  if (!processes.ok()) Die(processes.status().ToString());

  const std::string cold_token = orchestrator.AgentToken("cold");
  const std::string snap_token = orchestrator.AgentToken("snap");
  const std::string proc_token = orchestrator.AgentToken("proc");
  std::cerr << "saving the snapshot (small)...\n";
  absl::Time save_began = absl::Now();
  if (auto saved = (*microvms)->PrepareSnapshot("small"); !saved.ok()) Die(saved.ToString());
  const double save_ms = absl::ToDoubleMilliseconds(absl::Now() - save_began);
  const auto snapshot_bytes = fs::file_size(dir.path() + "/vm/.snapshots/small.vmstate");

  std::vector<double> cold_up, cold_off, snap_up, snap_off, proc_up, proc_off;
  for (int round = 0; round < rounds; ++round) {
    Sample cold = Measure(**cold_vms, orchestrator, "cold", cold_token);
    Sample snap = Measure(**microvms, orchestrator, "snap", snap_token);
    Sample proc = Measure(**processes, orchestrator, "proc", proc_token);
    cold_up.push_back(cold.to_polling_ms);
    cold_off.push_back(cold.stop_ms);
    snap_up.push_back(snap.to_polling_ms);
    snap_off.push_back(snap.stop_ms);
    proc_up.push_back(proc.to_polling_ms);
    proc_off.push_back(proc.stop_ms);
    std::cerr << absl::StrFormat("round %d: cold %.0f ms, snapshot %.0f ms, process %.0f ms\n",
                                 round + 1, cold.to_polling_ms, snap.to_polling_ms,
                                 proc.to_polling_ms);
  }
  if (show_console) std::cerr << testutil::ReadFile(dir.path() + "/vm/snap/agent.log");
  std::printf("builder machines: wake to agent polling, stop to asleep (%s, %d rounds)\n\n",
              (*microvms)->accelerator().c_str(), rounds);
  std::printf("| machine | wake → polling p50 | max | stop → asleep p50 | max |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  auto row = [](const char* name, const std::vector<double>& up, const std::vector<double>& off) {
    std::printf("| %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms |\n", name, Percentile(up, 0.5),
                Percentile(up, 1.0), Percentile(off, 0.5), Percentile(off, 1.0));
  };
  row("microvm, cold boot", cold_up, cold_off);
  row("microvm, snapshot restore", snap_up, snap_off);
  row("process", proc_up, proc_off);
  std::printf("\nsnapshot of a small (512 MiB) machine: %.1f MB, saved in %.0f ms\n",
              static_cast<double>(snapshot_bytes) / 1e6, save_ms);
  std::printf(
      "method: Wake() then DescribeTaskQueue polled every few ms until a poll of the agent "
      "shows; then Stop() (the agent gets SIGTERM, exits; a guest unmounts its volume and powers "
      "off) until the provider sees the machine asleep; wakes alternate cold, snapshot, "
      "process.\n");
  return 0;
}
