// A flood of connections against the real orchestrator: past its connection cap, and past its
// open-file limit (where gRPC 1.51's own listener stopped accepting for good); and against
// kiln-worker's two listeners (BuildService, webhooks over HTTPS). Once the flood is gone a new
// client is served; while it lasts the listener's gauge says it cannot accept.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kiln/api/v1/workflow_service.grpc.pb.h"
#include "sdk/connection.h"
#include "tests/testutil/http.h"
#include "tests/testutil/orchestrator.h"
#include "tests/testutil/process.h"
#include "tests/testutil/tls.h"

namespace kiln {
namespace {

// Plain TCP connections to 127.0.0.1:port, closed on destruction.
class Flood {
 public:
  Flood(int port, int count) : port_(port) { Add(count); }
  void Add(int count) {
    for (int i = 0; i < count; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      REQUIRE(fd >= 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port_));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      // The kernel completes the handshake from the listen queue whether or not the server
      // accepts: every connect succeeds.
      REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
      fds_.push_back(fd);
    }
  }
  size_t size() const { return fds_.size(); }
  ~Flood() { Close(); }
  void Close() {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  }

 private:
  int port_;
  std::vector<int> fds_;
};

// A new client (its own channel, so its own connection) gets an answer.
bool NewClientServed(const std::string& address) {
  sdk::Connection connection(address);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  api::v1::GetSystemInfoResponse response;
  // Any answer of the server's own proves a new connection is served; this one presents no
  // token, so the answer is UNAUTHENTICATED.
  const grpc::Status status = connection.workflow_service().GetSystemInfo(&ctx, {}, &response);
  return status.ok() || status.error_code() == grpc::StatusCode::UNAUTHENTICATED;
}

std::string Metric(int metrics_port, const std::string& name) {
  auto body = testutil::HttpGet("127.0.0.1", metrics_port, "/metrics");
  if (!body.ok()) return "";
  const std::string text = "\n" + *body;
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return "";
  const size_t start = at + name.size() + 2;
  return text.substr(start, text.find('\n', start) - start);
}

TEST_CASE("A flood past the connection cap leaves the listener serving once it is gone") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(
      dir.path() + "/data", {"--max-connections", "32", "--listener-probe-interval", "0.1"});
  REQUIRE(orchestrator.Start().ok());
  const int port = std::stoi(orchestrator.address().substr(orchestrator.address().rfind(':') + 1));
  {
    Flood flood(port, 100);
    // At the cap: the self-probe is refused like everyone else, and says so.
    REQUIRE(testutil::WaitFor(
        [&] {
          return Metric(orchestrator.metrics_port(),
                        "kiln_listener_accepting{listener=\"grpc\"}") == "0";
        },
        absl::Seconds(20)));
  }
  REQUIRE(testutil::WaitFor([&] { return NewClientServed(orchestrator.address()); },
                            absl::Seconds(20)));
  REQUIRE(testutil::WaitFor(
      [&] {
        return Metric(orchestrator.metrics_port(), "kiln_listener_accepting{listener=\"grpc\"}") ==
               "1";
      },
      absl::Seconds(20)));
  CHECK(orchestrator.connection().CheckHealth(absl::Seconds(5)).ok());
  CHECK(absl::StrContains(orchestrator.Log(), "connection cap (--max-connections) reached"));
  REQUIRE(orchestrator.Stop().value() == 0);
}

TEST_CASE("A flood past the open-file limit leaves the listener serving once it is gone") {
  const std::string prlimit = "/usr/bin/prlimit";
  if (!std::filesystem::exists(prlimit)) {
    WARN("no prlimit here: the out-of-descriptors case is not run");
    return;
  }
  testutil::TempDir dir;
  const std::string address = absl::StrCat("127.0.0.1:", testutil::FreePort());
  const int metrics_port = testutil::FreePort();
  // A cap above the descriptor limit, so that accept itself meets EMFILE (what deafened gRPC's
  // listener for good).
  auto process =
      testutil::Process::Start(prlimit,
                               {"--nofile=200:200", testutil::BinaryPath("kiln-orchestrator"),
                                "--data-dir", dir.path() + "/data", "--listen", address,
                                "--metrics", absl::StrCat("127.0.0.1:", metrics_port),
                                "--max-connections", "1000", "--listener-probe-interval", "0.1"},
                               dir.path() + "/orchestrator.log");
  REQUIRE(process.ok());
  REQUIRE(testutil::WaitFor([&] { return NewClientServed(address); }, absl::Seconds(30)));
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  {
    Flood flood(port, 400);
    REQUIRE(testutil::WaitFor(
        [&] { return absl::StrContains((*process)->Output(), "out of file descriptors"); },
        absl::Seconds(20)));
  }
  REQUIRE(testutil::WaitFor([&] { return NewClientServed(address); }, absl::Seconds(20)));
  CHECK(testutil::WaitFor(
      [&] { return Metric(metrics_port, "kiln_listener_accepting{listener=\"grpc\"}") == "1"; },
      absl::Seconds(20)));
  (*process)->Signal(SIGTERM);
  auto code = (*process)->Wait(absl::Seconds(30));
  REQUIRE(code.ok());
  CHECK(*code == 0);
}

TEST_CASE("kiln-worker: a flood past the cap on either listener leaves both serving after") {
  testutil::TempDir dir;
  testutil::OrchestratorProcess orchestrator(dir.path() + "/data");
  REQUIRE(orchestrator.Start().ok());
  REQUIRE(testutil::MakeCertificate(dir.path(), "server").ok());
  const int grpc_port = testutil::FreePort();
  const int http_port = testutil::FreePort();
  const int metrics_port = testutil::FreePort();
  const std::string grpc_address = absl::StrCat("127.0.0.1:", grpc_port);
  auto worker = testutil::Process::Start(testutil::BinaryPath("kiln-worker"),
                                         {"--orchestrator",
                                          orchestrator.address(),
                                          "--auth-key-file",
                                          orchestrator.key_file(),
                                          "--data-dir",
                                          dir.path() + "/worker",
                                          "--listen",
                                          grpc_address,
                                          "--http",
                                          absl::StrCat("127.0.0.1:", http_port),
                                          "--metrics",
                                          absl::StrCat("127.0.0.1:", metrics_port),
                                          "--http-tls-cert",
                                          dir.path() + "/server.pem",
                                          "--http-tls-key",
                                          dir.path() + "/server.key",
                                          "--max-connections",
                                          "16",
                                          "--listener-probe-interval",
                                          "0.1"},
                                         dir.path() + "/worker.log");
  REQUIRE(worker.ok());
  REQUIRE(
      testutil::WaitFor([&] { return absl::StrContains((*worker)->Output(), "worker.connected"); },
                        absl::Seconds(30)));
  testutil::TlsClientOptions tls;
  tls.ca_file = dir.path() + "/server.pem";
  auto https_served = [&] {
    auto reply = testutil::HttpsCall(http_port, "GET", "/healthz", tls);
    return reply.ok() && reply->status == 200;
  };
  auto grpc_served = [&] {
    return sdk::Connection(grpc_address).CheckHealth(absl::Seconds(2)).ok();
  };
  REQUIRE(https_served());
  REQUIRE(grpc_served());

  for (const auto& [listener, port] : {std::pair<std::string, int>{"grpc", grpc_port},
                                       std::pair<std::string, int>{"http", http_port}}) {
    INFO(listener);
    const std::string gauge = absl::StrCat("kiln_listener_accepting{listener=\"", listener, "\"}");
    {
      // A flood that goes on: a slot the probe's own connection frees goes to the next comer.
      Flood flood(port, 40);
      absl::Time next = absl::Now();
      REQUIRE(testutil::WaitFor(
          [&] {
            if (absl::Now() >= next && flood.size() < 400) {
              flood.Add(1);
              next += absl::Milliseconds(50);
            }
            return Metric(metrics_port, gauge) == "0";
          },
          absl::Seconds(30)));
    }
    CHECK(testutil::WaitFor([&] { return https_served() && grpc_served(); }, absl::Seconds(30)));
    CHECK(testutil::WaitFor([&] { return Metric(metrics_port, gauge) == "1"; }, absl::Seconds(20)));
  }
  CHECK(absl::StrContains((*worker)->Output(), "connection cap (--max-connections) reached"));
  (*worker)->Signal(SIGTERM);
  auto code = (*worker)->Wait(absl::Seconds(30));
  REQUIRE(code.ok());
  CHECK(*code == 0);
  REQUIRE(orchestrator.Stop().value() == 0);
}

}  // namespace
}  // namespace kiln
