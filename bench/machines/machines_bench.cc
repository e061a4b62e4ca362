// The builder machines benchmark: how long a wake takes until the agent polls its queue, for
// the microvm provider booting cold and restoring a snapshot, beside the process provider, and
// how long a drained machine takes to power off. A real kiln-orchestrator; the wakes alternate
// (cold, snapshot, process, cold, ...) so a swing in the machine's speed hits each alike.
//
//   kiln-machines-bench [--rounds 5] [--image build/builder-image]
//
// Method: Wake() is called and the orchestrator's DescribeTaskQueue(project/<id>) polled every
// 2 ms until a poller of this wake shows ("to polling"); with nothing queued the agent drains
// after its idle grace (0.5 s) and exits; "power-off" is from its poller leaving the queue
// (the agent's last poll ends as it exits) to the provider seeing the machine asleep (for a
// microVM: the guest unmounts its volume and powers off, and QEMU exits).
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

int Pollers(testutil::OrchestratorProcess& orchestrator, const std::string& project) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name("project/" + project);
  request.set_activity(true);
  api::DescribeTaskQueueResponse response;
  auto status =
      orchestrator.connection().workflow_service().DescribeTaskQueue(&ctx, request, &response);
  return status.ok() ? response.pollers_size() : -1;
}

struct Sample {
  double to_polling_ms = 0;
  double power_off_ms = 0;
};

Sample Measure(worker::MachineProvider& provider, testutil::OrchestratorProcess& orchestrator,
               const std::string& project, const std::string& token) {
  // The orchestrator forgets a poller once its poll ends; wait until the last round's is gone.
  if (!testutil::WaitFor([&] { return Pollers(orchestrator, project) == 0; }, absl::Seconds(60))) {
    Die("a previous agent still polls " + project);
  }
  absl::Time began = absl::Now();
  auto woke = provider.Wake({.project = project, .size = "small", .token = token});
  if (!woke.ok()) Die(absl::StrCat("wake ", project, ": ", woke.status().ToString()));
  Sample sample;
  if (!testutil::WaitFor([&] { return Pollers(orchestrator, project) > 0; }, absl::Seconds(120),
                         absl::Milliseconds(2))) {
    Die("the agent of " + project + " never polled");
  }
  sample.to_polling_ms = absl::ToDoubleMilliseconds(absl::Now() - began);
  if (!testutil::WaitFor([&] { return Pollers(orchestrator, project) == 0; }, absl::Seconds(120),
                         absl::Milliseconds(2))) {
    Die("the agent of " + project + " never drained");
  }
  absl::Time drained = absl::Now();
  auto asleep = [&] {
    auto status = provider.Status(project);
    return status.ok() && status->state == worker::MachineState::kAsleep;
  };
  if (!testutil::WaitFor(asleep, absl::Seconds(120), absl::Milliseconds(2))) {
    Die("the machine of " + project + " never went to sleep");
  }
  sample.power_off_ms = absl::ToDoubleMilliseconds(absl::Now() - drained);
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
  using namespace kiln;
  using namespace kiln::bench;
  CLI::App app("kiln-machines-bench: builder machine wakes, microvm (cold, snapshot) and process");
  int rounds = 5;
  app.add_option("--rounds", rounds, "Wakes of each kind")->check(CLI::Range(1, 100));
  std::string image =
      (fs::path(testutil::BinaryPath("kiln-builder-agent")).parent_path().parent_path().parent_path() /
       "builder-image")
          .string();
  app.add_option("--image", image, "The builder image (make builder-image)");
  CLI11_PARSE(app, argc, argv);

  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  if (auto started = orchestrator.Start(); !started.ok()) Die(started.ToString());

  worker::MicrovmOptions vm;
  vm.machines_dir = dir.path() + "/vm";
  vm.image_dir = image;
  vm.orchestrator = orchestrator.address();
  vm.volume_bytes = 1 << 30;
  vm.idle_grace = absl::Milliseconds(500);
  auto microvms = worker::MicrovmMachineProvider::Create(vm);
  if (!microvms.ok()) Die(microvms.status().ToString());
  worker::ProcessProviderOptions process;
  process.machines_dir = dir.path() + "/process";
  process.agent_binary = testutil::BinaryPath("kiln-builder-agent");
  process.orchestrator = orchestrator.address();
  process.idle_grace = absl::Milliseconds(500);
  auto processes = worker::ProcessMachineProvider::Create(process);
  if (!processes.ok()) Die(processes.status().ToString());

  const std::string cold_token = orchestrator.AgentToken("cold");
  const std::string snap_token = orchestrator.AgentToken("snap");
  const std::string proc_token = orchestrator.AgentToken("proc");
  std::cerr << "saving the snapshot (small)...\n";
  absl::Time save_began = absl::Now();
  if (auto saved = (*microvms)->PrepareSnapshot("small"); !saved.ok()) Die(saved.ToString());
  const double save_ms = absl::ToDoubleMilliseconds(absl::Now() - save_began);
  const auto snapshot_bytes =
      fs::file_size(dir.path() + "/vm/.snapshots/small.vmstate");

  std::vector<double> cold_up, cold_off, snap_up, snap_off, proc_up, proc_off;
  for (int round = 0; round < rounds; ++round) {
    // A cold boot: snapshots are by size and the cold project's volume is of another size?
    // No: the snapshot is removed for the cold wake and put back after it.
    fs::rename(dir.path() + "/vm/.snapshots/small.vmstate", dir.path() + "/vm/small.vmstate.aside");
    Sample cold = Measure(**microvms, orchestrator, "cold", cold_token);
    fs::rename(dir.path() + "/vm/small.vmstate.aside", dir.path() + "/vm/.snapshots/small.vmstate");
    Sample snap = Measure(**microvms, orchestrator, "snap", snap_token);
    Sample proc = Measure(**processes, orchestrator, "proc", proc_token);
    cold_up.push_back(cold.to_polling_ms);
    cold_off.push_back(cold.power_off_ms);
    snap_up.push_back(snap.to_polling_ms);
    snap_off.push_back(snap.power_off_ms);
    proc_up.push_back(proc.to_polling_ms);
    proc_off.push_back(proc.power_off_ms);
    std::cerr << absl::StrFormat("round %d: cold %.0f ms, snapshot %.0f ms, process %.0f ms\n",
                                 round + 1, cold.to_polling_ms, snap.to_polling_ms,
                                 proc.to_polling_ms);
  }
  std::printf("builder machines: wake to agent polling, drained to asleep (%s, %d rounds)\n\n",
              (*microvms)->accelerator().c_str(), rounds);
  std::printf("| machine | wake → polling p50 | max | drained → asleep p50 | max |\n");
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
      "method: Wake() then DescribeTaskQueue polled every 2 ms until the agent's poller shows; "
      "idle grace 0.5 s; drained = its poller gone, asleep = the provider's Status; wakes "
      "alternate cold, snapshot, process.\n");
  return 0;
}
