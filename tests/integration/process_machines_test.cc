// The process machine provider with the real kiln-builder-agent and a real kiln-orchestrator:
// an agent woken polls project/<id> and puts its machine to sleep by itself; concurrent wakes
// start one agent; a provider created again adopts a running agent; failures to start are
// visible in Status and in agent.log; Stop, Destroy and the machine limit. No podman needed
// (no activity runs), so the registry is a dummy address. Every test stops what it woke.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "tests/testutil/agent_token.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "worker/machines/process_provider.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;
using worker::MachineState;
using worker::MachineStatus;
using worker::ProcessMachineProvider;
using worker::ProcessProviderOptions;
using worker::WakeRequest;

// An agent token of `project`, minted with the key of the orchestrator whose data directory is
// `data_dir` (its agents' polls are refused without a valid one).
std::string AgentToken(const std::string& data_dir, const std::string& project) {
  return testutil::RequireAgentToken(data_dir + "/auth.key", project, "process_machines_test");
}

ProcessProviderOptions Options(const testutil::TempDir& dir, const std::string& orchestrator,
                               absl::Duration idle_grace) {
  ProcessProviderOptions options;
  options.machines_dir = dir.path() + "/machines";
  options.agent_binary = testutil::BinaryPath("kiln-builder-agent");
  options.orchestrator = orchestrator;
  options.registry = "127.0.0.1:1";  // Never used: no build runs.
  options.registry_tls_verify = false;
  options.idle_grace = idle_grace;
  return options;
}

std::unique_ptr<ProcessMachineProvider> MakeProvider(ProcessProviderOptions options) {
  auto provider = ProcessMachineProvider::Create(std::move(options));
  INFO(provider.status().ToString());
  REQUIRE(provider.ok());
  return *std::move(provider);
}

// Ends every agent the test woke, whatever happened (declared after the provider, so it runs
// first): Stop signals exactly the agent's process, through its pidfd.
struct StopAllAtEnd {
  std::unique_ptr<ProcessMachineProvider>& provider;
  ~StopAllAtEnd() {
    if (!provider) return;
    auto machines = provider->List();
    if (!machines.ok()) return;
    for (const MachineStatus& machine : *machines) {
      (void)provider->Stop(machine.project, absl::Seconds(5)).IgnoreError();  // Best effort.
    }
  }
};

MachineStatus StatusOf(ProcessMachineProvider& provider, const std::string& project) {
  auto status = provider.Status(project);
  INFO(status.status().ToString());
  REQUIRE(status.ok());
  return *status;
}

bool Asleep(ProcessMachineProvider& provider, const std::string& project) {
  auto status = provider.Status(project);
  return status.ok() && status->state == MachineState::kAsleep;
}

// The identities polling the activity queue project/<project>.
std::vector<std::string> Pollers(testutil::OrchestratorProcess& orchestrator,
                                 const std::string& project) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  api::DescribeTaskQueueRequest request;
  request.mutable_task_queue()->set_name("project/" + project);
  request.set_activity(true);
  api::DescribeTaskQueueResponse response;
  std::vector<std::string> identities;
  if (!orchestrator.connection()
           .workflow_service()
           .DescribeTaskQueue(&ctx, request, &response)
           .ok())
    return identities;
  for (const auto& poller : response.pollers()) identities.push_back(poller.identity());
  return identities;
}

std::string Link(const std::string& path) {
  std::error_code error;
  return std::filesystem::read_symlink(path, error).string();
}

TEST_CASE("A woken agent polls its queue and sleeps by itself and a new wake reuses the volume",
          "[machines]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto provider = MakeProvider(Options(dir, orchestrator.address(), absl::Seconds(1)));
  StopAllAtEnd stop_all{provider};

  auto woke = provider->Wake(WakeRequest{
      .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
  INFO(woke.status().ToString());
  REQUIRE(woke.ok());
  REQUIRE_FALSE(woke->already_awake);
  REQUIRE(woke->pid > 0);
  MachineStatus status = StatusOf(*provider, "web");
  const std::string log_path = status.log_path;
  INFO(testutil::ReadFile(log_path));
  REQUIRE(status.state == MachineState::kAwake);
  REQUIRE(status.pid == woke->pid);
  REQUIRE(status.volume == dir.path() + "/machines/web/volume");
  // Detached from the worker: its own session and (root can here) its own mount namespace.
  REQUIRE(::getsid(woke->pid) == woke->pid);
  REQUIRE(Link(absl::StrCat("/proc/", woke->pid, "/ns/mnt")) != Link("/proc/self/ns/mnt"));
  // The token never on its command line.
  REQUIRE_FALSE(absl::StrContains(testutil::ReadFile(absl::StrCat("/proc/", woke->pid, "/cmdline")),
                                  "kiln1."));

  // It serves project/web, then drains and exits 0: the machine is asleep.
  REQUIRE(
      testutil::WaitFor([&] { return !Pollers(orchestrator, "web").empty(); }, absl::Seconds(20)));
  REQUIRE(absl::StrContains(Pollers(orchestrator, "web")[0], "kiln-builder-agent/web"));
  REQUIRE(testutil::WaitFor([&] { return Asleep(*provider, "web"); }, absl::Seconds(20)));
  status = StatusOf(*provider, "web");
  REQUIRE(status.last_exit_code == 0);
  REQUIRE(status.pid == 0);
  std::string log = testutil::ReadFile(log_path);
  REQUIRE(absl::StrContains(log, "agent.drained"));
  REQUIRE(absl::StrContains(log, absl::StrCat("agent pid ", woke->pid, " exited with code 0")));
  REQUIRE_FALSE(absl::StrContains(log, "kiln1."));

  // Woken again: a new agent on the same volume (the agent's lock file is still there).
  REQUIRE(std::filesystem::exists(status.volume + "/agent.lock"));
  auto again = provider->Wake(WakeRequest{
      .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
  REQUIRE(again.ok());
  REQUIRE_FALSE(again->already_awake);
  REQUIRE(again->pid != woke->pid);
  REQUIRE(StatusOf(*provider, "web").volume == status.volume);
  REQUIRE(testutil::WaitFor([&] { return Asleep(*provider, "web"); }, absl::Seconds(20)));
  REQUIRE(StatusOf(*provider, "web").last_exit_code == 0);
  auto listed = provider->List();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  REQUIRE((*listed)[0].project == "web");
}

TEST_CASE("Concurrent wakes of one project start one agent that Stop ends", "[machines]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  auto provider = MakeProvider(Options(dir, orchestrator.address(), absl::Seconds(60)));
  // A second provider on the same directory: another worker process, as far as it can tell
  // (it shares only the files and their flock).
  auto other = MakeProvider(Options(dir, orchestrator.address(), absl::Seconds(60)));
  StopAllAtEnd stop_all{provider};

  constexpr int kWakers = 6;
  std::vector<absl::StatusOr<worker::WakeResult>> results(kWakers);
  std::vector<std::thread> threads;
  const std::string token = AgentToken(dir.path() + "/data", "api");
  for (int i = 0; i < kWakers; ++i) {
    threads.emplace_back([&, i] {
      ProcessMachineProvider& p = i % 2 == 0 ? *provider : *other;
      results[i] = p.Wake(WakeRequest{.project = "api", .size = "small", .token = token});
    });
  }
  for (std::thread& t : threads) t.join();
  int started = 0;
  for (const auto& result : results) {
    INFO(result.status().ToString());
    REQUIRE(result.ok());
    started += result->already_awake ? 0 : 1;
    REQUIRE(result->pid == results[0]->pid);
  }
  REQUIRE(started == 1);
  REQUIRE(StatusOf(*other, "api").pid == results[0]->pid);

  // Serving (its SIGTERM handling in place: a SIGTERM before that kills it, code 143).
  REQUIRE(
      testutil::WaitFor([&] { return !Pollers(orchestrator, "api").empty(); }, absl::Seconds(20)));
  REQUIRE(provider->Stop("api", absl::Seconds(10)).ok());
  MachineStatus status = StatusOf(*provider, "api");
  REQUIRE(status.state == MachineState::kAsleep);
  REQUIRE(testutil::WaitFor([&] { return Asleep(*other, "api"); }, absl::Seconds(10)));
  // SIGTERM: the agent stops gracefully (exit 0). Both providers live in this one process, so
  // whichever reaped the child knows the code; the other saw a process it could not reap (-1).
  int other_code = StatusOf(*other, "api").last_exit_code;
  REQUIRE(std::max(status.last_exit_code, other_code) == 0);
  REQUIRE(std::min(status.last_exit_code, other_code) == -1);
  // Asleep already: OK, nothing to do.
  REQUIRE(provider->Stop("api", absl::Seconds(1)).ok());
  REQUIRE(provider->Stop("never-woken", absl::Seconds(1)).ok());
}

TEST_CASE("A provider created again adopts the running agent and sees it exit", "[machines]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  ProcessProviderOptions options = Options(dir, orchestrator.address(), absl::Seconds(4));
  auto provider = MakeProvider(options);
  StopAllAtEnd stop_all{provider};
  auto woke = provider->Wake(WakeRequest{
      .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
  REQUIRE(woke.ok());
  REQUIRE(
      testutil::WaitFor([&] { return !Pollers(orchestrator, "web").empty(); }, absl::Seconds(20)));

  // The worker goes away (the agent does not) and comes back.
  provider.reset();
  REQUIRE(::kill(woke->pid, 0) == 0);
  provider = MakeProvider(options);
  MachineStatus status = StatusOf(*provider, "web");
  REQUIRE(status.state == MachineState::kAwake);
  REQUIRE(status.pid == woke->pid);
  auto again = provider->Wake(WakeRequest{
      .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
  REQUIRE(again.ok());
  REQUIRE(again->already_awake);
  REQUIRE(again->pid == woke->pid);

  REQUIRE(testutil::WaitFor([&] { return Asleep(*provider, "web"); }, absl::Seconds(30)));
  // Still this process's child, so the adopting provider reaps it and knows its code.
  REQUIRE(StatusOf(*provider, "web").last_exit_code == 0);
}

TEST_CASE("An agent that cannot start leaves its machine asleep with exit code and log saying why",
          "[machines]") {
  testutil::TempDir dir;
  SECTION("a bad agent binary path") {
    ProcessProviderOptions options = Options(dir, "127.0.0.1:1", absl::Seconds(1));
    options.agent_binary = dir.path() + "/no-such-agent";
    auto provider = MakeProvider(options);
    auto woke = provider->Wake(WakeRequest{
        .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
    REQUIRE(absl::IsUnavailable(woke.status()));
    REQUIRE(absl::StrContains(woke.status().message(), "No such file or directory"));
    MachineStatus status = StatusOf(*provider, "web");
    REQUIRE(status.state == MachineState::kAsleep);
    REQUIRE(status.last_exit_code == 127);
    REQUIRE(absl::StrContains(testutil::ReadFile(status.log_path),
                              "kiln-worker: cannot start " + options.agent_binary));
  }
  SECTION("an orchestrator nobody listens on") {
    const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
    ProcessProviderOptions options = Options(dir, address, absl::Seconds(1));
    options.extra_agent_args = {"--connect-timeout", "1"};
    auto provider = MakeProvider(options);
    StopAllAtEnd stop_all{provider};
    auto woke = provider->Wake(WakeRequest{
        .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
    REQUIRE(woke.ok());
    REQUIRE(testutil::WaitFor([&] { return Asleep(*provider, "web"); }, absl::Seconds(20)));
    MachineStatus status = StatusOf(*provider, "web");
    std::string log = testutil::ReadFile(status.log_path);
    INFO(log);
    REQUIRE(status.last_exit_code == 1);
    REQUIRE(
        absl::StrContains(log, "kiln-builder-agent: cannot reach the orchestrator at " + address));
    REQUIRE(absl::StrContains(log, "exited with code 1"));
  }
}

TEST_CASE("Stop kills an agent that ignores SIGTERM after the grace", "[machines]") {
  testutil::TempDir dir;
  // Named like the agent; ignores SIGTERM and lives until killed.
  const std::string fake = dir.path() + "/bin/kiln-builder-agent";
  // It says when it ignores SIGTERM: a SIGTERM before that would end it (a race under load).
  const std::string ready = dir.path() + "/ignoring-term";
  testutil::WriteFile(fake, "#!/bin/sh\ntrap '' TERM\ntouch '" + ready + "'\nexec sleep 600\n");
  REQUIRE(::chmod(fake.c_str(), 0755) == 0);
  ProcessProviderOptions options = Options(dir, "127.0.0.1:1", absl::Seconds(1));
  options.agent_binary = fake;
  auto provider = MakeProvider(options);
  StopAllAtEnd stop_all{provider};
  auto woke = provider->Wake(WakeRequest{.project = "web", .size = "small", .token = ""});
  REQUIRE(woke.ok());
  REQUIRE(testutil::WaitFor([&] { return std::filesystem::exists(ready); }, absl::Seconds(20)));
  absl::Time began = absl::Now();
  REQUIRE(provider->Stop("web", absl::Milliseconds(300)).ok());
  REQUIRE(absl::Now() - began >= absl::Milliseconds(300));
  MachineStatus status = StatusOf(*provider, "web");
  REQUIRE(status.state == MachineState::kAsleep);
  REQUIRE(status.last_exit_code == 128 + SIGKILL);
}

TEST_CASE("The machine limit and Destroy and bad requests", "[machines]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  ProcessProviderOptions options = Options(dir, orchestrator.address(), absl::Seconds(60));
  options.max_machines = 1;
  auto provider = MakeProvider(options);
  StopAllAtEnd stop_all{provider};

  REQUIRE(absl::IsInvalidArgument(
      provider->Wake(WakeRequest{.project = "../etc", .size = "small", .token = "t"}).status()));
  REQUIRE(absl::IsInvalidArgument(
      provider
          ->Wake(WakeRequest{
              .project = "Web", .size = "small", .token = AgentToken(dir.path() + "/data", "Web")})
          .status()));
  REQUIRE(absl::IsInvalidArgument(
      provider->Wake(WakeRequest{.project = "web", .size = "xl", .token = "t"}).status()));
  REQUIRE(absl::IsInvalidArgument(provider->Status("a/b").status()));
  REQUIRE(absl::IsInvalidArgument(provider->Stop("", absl::Seconds(1))));

  auto web = provider->Wake(WakeRequest{
      .project = "web", .size = "small", .token = AgentToken(dir.path() + "/data", "web")});
  REQUIRE(web.ok());
  auto api = provider->Wake(WakeRequest{
      .project = "api", .size = "small", .token = AgentToken(dir.path() + "/data", "api")});
  REQUIRE(absl::IsResourceExhausted(api.status()));

  const std::string volume = StatusOf(*provider, "web").volume;
  REQUIRE(std::filesystem::is_directory(volume));
  REQUIRE(provider->Destroy("web").ok());
  REQUIRE_FALSE(std::filesystem::exists(dir.path() + "/machines/web"));
  REQUIRE(Asleep(*provider, "web"));
  REQUIRE(::kill(web->pid, 0) != 0);  // Gone (and reaped: not even a zombie).
  auto listed = provider->List();
  REQUIRE(listed.ok());
  for (const MachineStatus& machine : *listed) REQUIRE(machine.project != "web");

  // Room again.
  api = provider->Wake(WakeRequest{
      .project = "api", .size = "small", .token = AgentToken(dir.path() + "/data", "api")});
  REQUIRE(api.ok());
  REQUIRE(provider->Destroy("api").ok());
}

}  // namespace
}  // namespace kiln
