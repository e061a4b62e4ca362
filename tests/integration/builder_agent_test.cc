// The kiln-builder-agent process's lifecycle against a real orchestrator: it exits 0 by itself
// once its queue has stayed empty for the idle grace, and exits non-zero with one clear line
// when the orchestrator cannot be reached (at start, or for good while idle), when another
// agent holds its queue, and when another agent holds its volume. No podman needed (the activities
// are not run here).
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "tests/testutil/agent_token.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"

namespace kiln {
namespace {

namespace api = ::kiln::api::v1;

struct AgentRun {
  std::unique_ptr<testutil::Process> process;
  absl::Time started;
};

AgentRun StartAgent(const testutil::TempDir& dir, const std::string& name,
                    const std::vector<std::string>& args) {
  auto process = testutil::Process::Start(testutil::BinaryPath("kiln-builder-agent"), args,
                                          dir.path() + "/" + name + ".log");
  INFO(process.status().ToString());
  REQUIRE(process.ok());
  return {*std::move(process), absl::Now()};
}

// An agent token of project web, minted with the key of the orchestrator whose data directory
// is `data` beside the volume (the tests' layout; created if that orchestrator never started).
std::string AgentToken(const std::string& volume) {
  return testutil::RequireAgentToken(
      (std::filesystem::path(volume).parent_path() / "data" / "auth.key").string(), "web",
      "builder_agent_test");
}

// The token comes last.
std::vector<std::string> AgentArgs(const std::string& orchestrator, const std::string& volume,
                                   const std::string& grace) {
  return {"--orchestrator", orchestrator,   "--project", "web",     "--volume",
          volume,           "--idle-grace", grace,       "--token", AgentToken(volume)};
}

TEST_CASE("The agent exits 0 by itself once its queue has stayed empty for the idle grace",
          "[builder]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  const std::vector<std::string> args =
      AgentArgs(orchestrator.address(), dir.path() + "/volume", "1");
  AgentRun agent = StartAgent(dir, "agent", args);
  auto code = agent.process->Wait(absl::Seconds(20));
  absl::Duration took = absl::Now() - agent.started;
  INFO(agent.process->Output());
  REQUIRE(code.ok());
  REQUIRE(*code == 0);
  // The grace, plus process start, the health check and one short empty poll.
  REQUIRE(took >= absl::Seconds(1));
  REQUIRE(took < absl::Seconds(6));
  REQUIRE(absl::StrContains(agent.process->Output(), "agent.drained"));
  // The token is a secret: never in the agent's own log.
  REQUIRE_FALSE(absl::StrContains(agent.process->Output(), args.back()));

  // Woken again at once on the same machine and volume: the same identity takes the queue
  // back while the old lease still lives (it lasts 10 s after the last poll).
  AgentRun again =
      StartAgent(dir, "again", AgentArgs(orchestrator.address(), dir.path() + "/volume", "1"));
  auto again_code = again.process->Wait(absl::Seconds(20));
  INFO(again.process->Output());
  REQUIRE(again_code.ok());
  REQUIRE(*again_code == 0);
}

TEST_CASE("The agent is refused, naming the holder, when another agent serves its queue",
          "[builder]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  // Another poller takes the queue's exclusive lease (it lives 10 s after its poll ends).
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1500));
    api::PollActivityTaskQueueRequest request;
    request.mutable_task_queue()->set_name("project/web");
    request.set_identity("other-agent@machine-7");
    request.set_exclusive(true);
    api::PollActivityTaskQueueResponse response;
    // Only an agent of the project may hold its queue: a second one, on another machine.
    sdk::Connection other(orchestrator.address(), {.token = AgentToken(dir.path() + "/volume")});
    REQUIRE(other.workflow_service().PollActivityTaskQueue(&ctx, request, &response).ok());
  }
  AgentRun agent =
      StartAgent(dir, "agent", AgentArgs(orchestrator.address(), dir.path() + "/volume", "30"));
  auto code = agent.process->Wait(absl::Seconds(20));
  INFO(agent.process->Output());
  REQUIRE(code.ok());
  REQUIRE(*code == 1);
  // Refused at once, not after the 30 s grace.
  REQUIRE(absl::Now() - agent.started < absl::Seconds(8));
  REQUIRE(absl::StrContains(agent.process->Output(),
                            "kiln-builder-agent: refused: another agent "
                            "serves project/web"));
  REQUIRE(absl::StrContains(agent.process->Output(), "other-agent@machine-7"));
}

TEST_CASE("The agent exits non-zero with a clear message when the orchestrator is unreachable",
          "[builder]") {
  testutil::TempDir dir;
  const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  std::vector<std::string> args = AgentArgs(address, dir.path() + "/volume", "1");
  args.insert(args.end(), {"--connect-timeout", "1"});
  AgentRun agent = StartAgent(dir, "agent", args);
  auto code = agent.process->Wait(absl::Seconds(20));
  INFO(agent.process->Output());
  REQUIRE(code.ok());
  REQUIRE(*code == 1);
  REQUIRE(absl::Now() - agent.started < absl::Seconds(8));
  REQUIRE(absl::StrContains(agent.process->Output(),
                            "kiln-builder-agent: cannot reach the orchestrator at " + address));
}

TEST_CASE("The agent gives up with a clear message when the orchestrator goes away while idle",
          "[builder]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  std::vector<std::string> args = AgentArgs(orchestrator.address(), dir.path() + "/volume", "60");
  args.insert(args.end(), {"--orchestrator-lost-timeout", "2"});
  AgentRun agent = StartAgent(dir, "agent", args);
  REQUIRE(
      testutil::WaitFor([&] { return absl::StrContains(agent.process->Output(), "agent.serving"); },
                        absl::Seconds(20)));
  orchestrator.Kill();
  absl::Time killed = absl::Now();
  auto code = agent.process->Wait(absl::Seconds(30));
  INFO(agent.process->Output());
  REQUIRE(code.ok());
  REQUIRE(*code == 1);
  // Two health checks a second apart, 2 s of silence, and a poll's backoff at most.
  REQUIRE(absl::Now() - killed < absl::Seconds(15));
  REQUIRE(
      absl::StrContains(agent.process->Output(), "kiln-builder-agent: lost the orchestrator at " +
                                                     orchestrator.address() + ": no answer for"));
}

TEST_CASE("A second agent on the same volume is refused while the first runs", "[builder]") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  const std::string volume = dir.path() + "/volume";
  AgentRun first = StartAgent(dir, "first", AgentArgs(orchestrator.address(), volume, "30"));
  REQUIRE(
      testutil::WaitFor([&] { return absl::StrContains(first.process->Output(), "agent.serving"); },
                        absl::Seconds(20)));
  AgentRun second = StartAgent(dir, "second", AgentArgs(orchestrator.address(), volume, "30"));
  auto code = second.process->Wait(absl::Seconds(20));
  INFO(second.process->Output());
  REQUIRE(code.ok());
  REQUIRE(*code == 1);
  REQUIRE(
      absl::StrContains(second.process->Output(),
                        absl::StrCat("is in use by another agent (pid ", first.process->pid())));
  // SIGTERM ends the first one gracefully.
  first.process->Signal(SIGTERM);
  auto first_code = first.process->Wait(absl::Seconds(20));
  INFO(first.process->Output());
  REQUIRE(first_code.ok());
  REQUIRE(*first_code == 0);
}

}  // namespace
}  // namespace kiln
