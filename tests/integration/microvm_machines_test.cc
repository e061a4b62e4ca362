// The microvm machine provider, all real: QEMU (TCG here, KVM where the host has it) booting the
// builder image (make builder-image), a kiln-orchestrator, and a git server on 127.0.0.1. A
// workflow written here runs the agent's FetchSource inside the VM:
//   - a cold wake: the agent polls project/web through the restricted network (forwards to
//     127.0.0.1 only), the fetch lands in the volume image, the machine powers off on drain;
//   - while it is awake, a second machine on the same volume is refused (QEMU's image lock)
//     and a second wake starts nothing;
//   - a wake from the saved snapshot finds the first wake's mirror on the volume;
//   - a snapshot that does not restore is dropped and the wake boots cold.
// Podman inside a TCG guest is too slow for real builds: those are tested on the process
// provider. Skipped, saying why, only where QEMU or the image is missing (a failure instead
// with KILN_REQUIRE_MICROVM=1).
#include <catch2/catch.hpp>

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "builder-agent/git/smart_http_server.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "kiln/platform/v1/builder.pb.h"
#include "sdk/client.h"
#include "sdk/workflow.h"
#include "sdk/workflow_worker.h"
#include "tests/testutil/git_require.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/registry.h"
#include "tests/testutil/tls.h"
#include "worker/machines/microvm_provider.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
namespace pb = ::kiln::platform::v1;
namespace fs = std::filesystem;
using sdk::FromPayloadAt;
using sdk::ToPayloads;
using worker::MachineState;
using worker::MicrovmMachineProvider;

constexpr char kGitToken[] = "git-token-for-the-vm";
constexpr absl::Duration kTcgSlack = absl::Seconds(180);

// build/release/bin/<binary> -> build/builder-image (where make builder-image writes it).
std::string ImageDir() {
  if (const char* dir = std::getenv("KILN_BUILDER_IMAGE")) return dir;
  return fs::path(testutil::BinaryPath("kiln-builder-agent"))
             .parent_path()
             .parent_path()
             .parent_path() /
         "builder-image";
}

// False, after saying why, when this host cannot run the test.
bool MicrovmAvailable() {
  std::string missing;
  if (!testutil::Installed("/usr/bin/qemu-system-x86_64")) {
    missing = "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)";
  } else if (!fs::exists(ImageDir() + "/initrd.cpio") || !fs::exists(ImageDir() + "/vmlinuz") ||
             !fs::exists(ImageDir() + "/root.img")) {
    missing = absl::StrCat("no builder image in ", ImageDir(), " (make builder-image)");
  } else if (!testutil::Installed("/bin/busybox")) {
    missing = "/bin/busybox is not installed (apt-get install busybox-static)";
  }
  if (missing.empty()) return true;
  if (std::getenv("KILN_REQUIRE_MICROVM") != nullptr) FAIL("microVM required: " << missing);
  WARN("SKIPPED: " << missing);
  return false;
}

// An activity on the VM's agent, tried once (TCG is slow: generous timeouts).
sdk::ActivityOptions OnAgent() {
  sdk::ActivityOptions options;
  options.task_queue = "project/web";
  options.start_to_close_timeout = absl::Minutes(5);
  options.retry_policy.set_maximum_attempts(1);
  return options;
}

sdk::Task<absl::StatusOr<api::Payloads>> Fetch(sdk::WorkflowContext& ctx, api::Payloads input) {
  pb::FetchSourceInput fetch;
  fetch.set_project_id("web");
  fetch.set_repository_url(FromPayloadAt<std::string>(input, 0).value_or(""));
  fetch.set_revision("main");
  fetch.set_token_secret("GIT");
  co_return co_await ctx.ExecuteActivity("kiln.builder.FetchSource", ToPayloads(fetch), OnAgent());
}

// Housekeeping runs podman inside the VM (from the image's root disk) on the volume.
sdk::Task<absl::StatusOr<api::Payloads>> Housekeep(sdk::WorkflowContext& ctx, api::Payloads) {
  pb::HousekeepingInput input;
  input.set_project_id("web");
  input.set_keep_last(2);
  co_return co_await ctx.ExecuteActivity("kiln.builder.Housekeeping", ToPayloads(input), OnAgent());
}

std::vector<std::string> Pollers(testutil::OrchestratorProcess& orchestrator) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name("project/web");
  request.set_activity(true);
  api::DescribeTaskQueueResponse response;
  std::vector<std::string> identities;
  if (orchestrator.connection()
          .workflow_service()
          .DescribeTaskQueue(&ctx, request, &response)
          .ok()) {
    for (const auto& poller : response.pollers()) identities.push_back(poller.identity());
  }
  return identities;
}

bool Asleep(MicrovmMachineProvider& provider) {
  auto status = provider.Status("web");
  return status.ok() && status->state == MachineState::kAsleep;
}

struct StopAtEnd {
  std::unique_ptr<MicrovmMachineProvider>& provider;
  ~StopAtEnd() {
    if (provider) (void)provider->Stop("web", absl::Seconds(10)).IgnoreError();  // Best effort.
  }
};

TEST_CASE("A microVM builder fetches through its restricted network and wakes from a snapshot",
          "[microvm]") {
  if (!MicrovmAvailable()) return;
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());

  const std::string repos = dir.path() + "/repos";
  const std::string origin = repos + "/site.git";
  fs::create_directories(origin);
  testutil::RequireGit(origin, {"init", "-q", "-b", "main"});
  std::ofstream(origin + "/index.html") << "v1\n";
  testutil::RequireGit(origin, {"add", "-A"});
  testutil::RequireGit(origin, {"commit", "-q", "-m", "v1"});
  const std::string v1 = testutil::RequireGit(origin, {"rev-parse", "HEAD"});
  auto git = builder::testing::SmartHttpServer::Start(repos, kGitToken);
  INFO(git.status().ToString());
  REQUIRE(git.ok());
  const std::string url = (*git)->Url("site.git");
  const int git_port = std::stoi(url.substr(url.rfind(':') + 1));

  worker::MicrovmOptions options;
  options.machines_dir = dir.path() + "/machines";
  options.image_dir = ImageDir();
  options.orchestrator = orchestrator.address();
  options.forward_ports = {git_port};
  options.volume_bytes = 256 << 20;
  options.idle_grace = absl::Seconds(2);
  // The git token reaches the agent as a secret, from the worker's secrets file.
  const std::string secrets = dir.path() + "/agent-secrets";
  std::ofstream(secrets) << "# the agents' secrets\nGIT=" << kGitToken << "\n";
  options.secrets_file = secrets;
  auto created = MicrovmMachineProvider::Create(options);
  INFO(created.status().ToString());
  REQUIRE(created.ok());
  std::unique_ptr<MicrovmMachineProvider> provider = *std::move(created);
  StopAtEnd stop_at_end{provider};
  REQUIRE_FALSE(provider->SnapshotUsable("small"));

  sdk::Client client(orchestrator.connection());
  sdk::WorkflowWorker workflows(orchestrator.connection(), "vm-tests", {});
  workflows.Register("Fetch", Fetch);
  workflows.Register("Housekeep", Housekeep);
  workflows.Start();
  auto fetch = [&](const std::string& id) {
    auto handle =
        client.StartWorkflow({.id = id, .task_queue = "vm-tests"}, "Fetch", ToPayloads(url));
    REQUIRE(handle.ok());
    auto result = client.GetResult(*handle, kTcgSlack);
    INFO(result.status().ToString() << "\nconsole:\n"
                                    << testutil::ReadFile(dir.path() + "/machines/web/agent.log"));
    REQUIRE(result.ok());
    auto fetched = FromPayloadAt<pb::FetchSourceResult>(*result, 0);
    REQUIRE(fetched.ok());
    return *fetched;
  };
  const std::string token = orchestrator.AgentToken("web");
  const std::string log_path = dir.path() + "/machines/web/agent.log";

  // A cold wake: the fetch runs inside the VM, through the forward to the git server.
  auto woke = provider->Wake({.project = "web", .size = "small", .token = token});
  INFO(woke.status().ToString() << "\nconsole:\n" << testutil::ReadFile(log_path));
  REQUIRE(woke.ok());
  REQUIRE_FALSE(woke->already_awake);
  REQUIRE(testutil::WaitFor([&] { return !Pollers(orchestrator).empty(); }, kTcgSlack));
  REQUIRE(absl::StrContains(Pollers(orchestrator)[0], "kiln-builder-agent/web@kiln-web"));
  // The token is on no command line (QEMU's is readable by every user of the host).
  REQUIRE_FALSE(
      absl::StrContains(testutil::ReadFile(absl::StrCat("/proc/", woke->pid, "/cmdline")), token));
  pb::FetchSourceResult first = fetch("fetch-1");
  REQUIRE(first.commit_sha() == v1);
  REQUIRE(first.mirror_created());
  REQUIRE((*git)->authorized() > 0);
  {
    // The same repository from a server on the host's loopback that is not forwarded: the
    // guest's 127.0.0.1 is its own, so nothing of the host's answers there.
    auto hidden = builder::testing::SmartHttpServer::Start(repos, kGitToken);
    REQUIRE(hidden.ok());
    const std::string hidden_url = (*hidden)->Url("site.git");
    auto handle = client.StartWorkflow({.id = "fetch-hidden", .task_queue = "vm-tests"}, "Fetch",
                                       ToPayloads(hidden_url));
    REQUIRE(handle.ok());
    auto result = client.GetResult(*handle, kTcgSlack);
    INFO(result.status().ToString());
    REQUIRE_FALSE(result.ok());
    REQUIRE(absl::StrContains(result.status().message(), "refused"));
    REQUIRE((*hidden)->requests() == 0);
  }
  {
    // Podman runs in the VM: nothing to prune on a fresh volume, and the volume's use reported.
    auto handle = client.StartWorkflow({.id = "housekeep-1", .task_queue = "vm-tests"}, "Housekeep",
                                       ToPayloads(std::string("")));
    REQUIRE(handle.ok());
    auto result = client.GetResult(*handle, kTcgSlack);
    INFO(result.status().ToString() << "\nconsole:\n"
                                    << testutil::ReadFile(dir.path() + "/machines/web/agent.log"));
    REQUIRE(result.ok());
    auto kept = FromPayloadAt<pb::HousekeepingResult>(*result, 0);
    REQUIRE(kept.ok());
    REQUIRE(kept->images_removed() == 0);
    REQUIRE(kept->volume_used() > 0);
  }

  // One machine per project: a second wake starts nothing, and a second VM on the volume is
  // refused by QEMU's image lock.
  auto again = provider->Wake({.project = "web", .size = "small", .token = token});
  REQUIRE(again.ok());
  REQUIRE(again->already_awake);
  std::string second_output;
  auto second_vm = testutil::RunCommand(
      "/usr/bin/qemu-system-x86_64",
      {"-M", "microvm", "-accel", "tcg", "-nodefaults", "-display", "none", "-drive",
       absl::StrCat("file=", dir.path(), "/machines/web/volume.img,format=raw,if=none,id=v"),
       "-device", "virtio-blk-device,drive=v", "-S"},
      &second_output, absl::Seconds(30));
  INFO(second_output);
  REQUIRE(second_vm.ok());
  REQUIRE(*second_vm != 0);
  REQUIRE(absl::StrContains(second_output, "lock"));

  // The agent drains, the guest powers off, the provider sees the machine asleep.
  REQUIRE(testutil::WaitFor([&] { return Asleep(*provider); }, kTcgSlack));
  REQUIRE(provider->Status("web")->last_exit_code == 0);
  REQUIRE(absl::StrContains(testutil::ReadFile(log_path), "kiln-vm: agent exited with code 0"));

  // The cold wake saved the idle machine in the background; wait for it (or save it now).
  if (!testutil::WaitFor([&] { return provider->SnapshotUsable("small"); }, kTcgSlack)) {
    REQUIRE(provider->PrepareSnapshot("small").ok());
  }
  REQUIRE(provider->SnapshotUsable("small"));

  // A snapshot wake: the mirror the first wake fetched is still on the volume.
  std::ofstream(origin + "/index.html") << "v2\n";
  testutil::RequireGit(origin, {"commit", "-q", "-am", "v2"});
  const std::string v2 = testutil::RequireGit(origin, {"rev-parse", "HEAD"});
  woke = provider->Wake({.project = "web", .size = "small", .token = token});
  INFO(woke.status().ToString() << "\nconsole:\n" << testutil::ReadFile(log_path));
  REQUIRE(woke.ok());
  pb::FetchSourceResult second = fetch("fetch-2");
  REQUIRE(second.commit_sha() == v2);
  REQUIRE_FALSE(second.mirror_created());
  REQUIRE(testutil::WaitFor([&] { return Asleep(*provider); }, kTcgSlack));
  REQUIRE(provider->Status("web")->last_exit_code == 0);

  // A snapshot that does not restore is dropped, and the wake boots cold.
  const std::string vmstate = dir.path() + "/machines/.snapshots/small.vmstate";
  fs::resize_file(vmstate, 4096);
  REQUIRE(provider->SnapshotUsable("small"));  // Its stamp is current: only a restore can tell.
  woke = provider->Wake({.project = "web", .size = "small", .token = token});
  INFO(woke.status().ToString() << "\nconsole:\n" << testutil::ReadFile(log_path));
  REQUIRE(woke.ok());
  REQUIRE(testutil::WaitFor([&] { return !Pollers(orchestrator).empty(); }, kTcgSlack));
  REQUIRE(fetch("fetch-3").commit_sha() == v2);
  REQUIRE(testutil::WaitFor([&] { return Asleep(*provider); }, kTcgSlack));
  workflows.Stop();
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

// The provider survives a worker restart: a new provider on the same directory follows the
// running VM (same QEMU pid), and its Stop reaches the guest through a new connection to the
// config port (the agent exits 0: it was asked, not killed).
// The orchestrator speaks mutual TLS here: the guest's agent gets the CA, its certificate and
// its key over the config port (the host's paths mean nothing inside), and nowhere else.
TEST_CASE("A microVM outlives its provider and a new provider adopts and stops it", "[microvm]") {
  if (!MicrovmAvailable()) return;
  testutil::TempDir dir;
  REQUIRE(testutil::MakeCertificate(dir.path(), "server").ok());
  REQUIRE(testutil::MakeCertificate(dir.path(), "client").ok());
  const std::string server_pem = dir.path() + "/server.pem";
  const std::string client_pem = dir.path() + "/client.pem";
  const std::string client_key = dir.path() + "/client.key";
  testutil::OrchestratorProcess orchestrator(
      dir.path() + "/data",
      {"--tls-cert", server_pem, "--tls-key", dir.path() + "/server.key", "--tls-client-ca",
       client_pem},
      {.tls = true,
       .tls_root_certs = testutil::ReadFile(server_pem),
       .tls_cert_chain = testutil::ReadFile(client_pem),
       .tls_private_key = testutil::ReadFile(client_key)});
  REQUIRE(orchestrator.Start().ok());
  worker::MicrovmOptions options;
  options.machines_dir = dir.path() + "/machines";
  options.image_dir = ImageDir();
  options.orchestrator = orchestrator.address();
  options.tls_ca_file = server_pem;
  options.tls_cert_file = client_pem;
  options.tls_key_file = client_key;
  options.volume_bytes = 128 << 20;
  options.idle_grace = absl::Seconds(600);  // Only a stop ends it.
  auto first = MicrovmMachineProvider::Create(options);
  REQUIRE(first.ok());
  auto woke =
      (*first)->Wake({.project = "web", .size = "small", .token = orchestrator.AgentToken("web")});
  INFO(woke.status().ToString());
  REQUIRE(woke.ok());
  const pid_t pid = woke->pid;
  // The agent got through mutual TLS: it polls.
  REQUIRE(testutil::WaitFor([&] { return !Pollers(orchestrator).empty(); }, kTcgSlack));
  // The key went over the config port only: not on QEMU's command line, not on the volume.
  const std::string key_base64 = absl::Base64Escape(testutil::ReadFile(client_key));
  REQUIRE_FALSE(absl::StrContains(testutil::ReadFile(absl::StrCat("/proc/", pid, "/cmdline")),
                                  key_base64.substr(0, 64)));
  // The worker restarts: the VM keeps running. The cold wake started saving a snapshot in the
  // background; its template VM is ended, not waited for (it would take seconds to boot).
  absl::Time resetting = absl::Now();
  first->reset();
  REQUIRE(absl::Now() - resetting < absl::Seconds(2));
  REQUIRE(::kill(pid, 0) == 0);
  options.snapshots = false;

  auto second = MicrovmMachineProvider::Create(options);
  REQUIRE(second.ok());
  std::unique_ptr<MicrovmMachineProvider> provider = *std::move(second);
  StopAtEnd stop_at_end{provider};
  auto status = provider->Status("web");
  REQUIRE(status.ok());
  REQUIRE(status->state == MachineState::kAwake);
  REQUIRE(status->pid == pid);
  REQUIRE(testutil::WaitFor([&] { return !Pollers(orchestrator).empty(); }, kTcgSlack));
  REQUIRE(provider->Stop("web", absl::Seconds(60)).ok());
  INFO(testutil::ReadFile(dir.path() + "/machines/web/agent.log"));
  REQUIRE(Asleep(*provider));
  REQUIRE(provider->Status("web")->last_exit_code == 0);
}

}  // namespace
}  // namespace kiln
