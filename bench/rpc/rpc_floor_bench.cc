// The RPC floor benchmark: what one message between two processes on this machine costs
// before any Kiln code runs, so that the engine benchmark's decoupled latencies can be read
// against it. A client here and an echo server in a process of its own (this binary again,
// with the hidden --role), ping-pong of a message of --bytes, one at a time:
//   tcp              a plain TCP socket on 127.0.0.1 (TCP_NODELAY), blocking read and write:
//                    the kernel's share alone;
//   grpc stream      a bidirectional gRPC stream, the server on gRPC's callback API (as the
//                    orchestrator's worker stream), the client on a completion queue of its own
//                    polled by the calling thread (gRPC's cheapest client: no thread hand-off);
//   grpc stream, server hop  the same, the server starting each answer from a thread of its
//                    own (as the orchestrator answers from its engine's executor);
//   grpc unary       a unary gRPC call per message, the same server and client.
// The shapes alternate in each round, so that the machine's swings weigh on all. Prints one
// table, the round trip's percentiles and half of its median (one way). See
// docs/benchmarks.md.
//
//   kiln-rpc-floor-bench [--iterations 10000] [--rounds 3] [--bytes 200]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/engine/role_process.h"
#include "common/executor.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "tests/testutil/process.h"

namespace kiln::bench {
namespace {

constexpr char kStreamMethod[] = "/kiln.bench.Floor/Echo";
constexpr char kUnaryMethod[] = "/kiln.bench.Floor/Unary";
// The same echo, each answer started from a thread of the server's own (as the orchestrator
// answers from its engine's executor) rather than from gRPC's.
constexpr char kHopMethod[] = "/kiln.bench.Floor/EchoHop";
constexpr char kGrpcRole[] = "grpc-echo";
constexpr char kTcpRole[] = "tcp-echo";

// Says "ready" to the parent (RoleProcess) and waits for its SIGTERM.
int ServeUntilTerm() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (::write(RoleProcess::kReadyFd, "ready\n", 6) != 6) return 1;
  int signal = 0;
  sigwait(&set, &signal);
  return 0;
}

// Echoes every message of a call back; a unary call (one message) is finished after its echo.
class EchoReactor : public grpc::ServerGenericBidiReactor {
 public:
  EchoReactor(bool unary, Executor* hop) : unary_(unary), hop_(hop) { StartRead(&buffer_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    if (hop_ == nullptr || !hop_->TrySubmit([this] { StartWrite(&buffer_); })) {
      StartWrite(&buffer_);
    }
  }
  void OnWriteDone(bool ok) override {
    if (!ok || unary_) {
      Finish(ok ? grpc::Status::OK : grpc::Status::CANCELLED);
      return;
    }
    StartRead(&buffer_);
  }
  void OnDone() override { delete this; }

 private:
  const bool unary_;
  Executor* const hop_;
  grpc::ByteBuffer buffer_;
};

class EchoService : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    return new EchoReactor(context->method() == kUnaryMethod,
                           context->method() == kHopMethod ? &hop_ : nullptr);
  }
  Executor hop_{"hop", 2, 1024};
};

int RunGrpcEcho(int port) {
  EchoService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials());
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return 1;
  int code = ServeUntilTerm();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return code;
}

// Moves all `n` bytes with `io` (read or write), retrying short transfers and EINTR; false
// when the peer is gone.
template <typename Io>
bool Full(Io io, int fd, char* data, size_t n) {
  while (n > 0) {
    ssize_t done = io(fd, data, n);
    if (done <= 0) {
      if (done < 0 && errno == EINTR) continue;
      return false;
    }
    data += done;
    n -= static_cast<size_t>(done);
  }
  return true;
}

bool ReadFull(int fd, char* data, size_t n) { return Full(::read, fd, data, n); }
bool WriteFull(int fd, char* data, size_t n) { return Full(::write, fd, data, n); }

void NoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

// Echoes --bytes at a time on each connection, one connection after the other.
int RunTcpEcho(int port, int bytes) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = Loopback(port);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener, 4) != 0) {
    std::cerr << "tcp-echo: cannot listen on port " << port << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  std::thread server([listener, bytes] {
    std::vector<char> buffer(static_cast<size_t>(bytes));
    for (;;) {
      int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      NoDelay(fd);
      while (ReadFull(fd, buffer.data(), buffer.size()) &&
             WriteFull(fd, buffer.data(), buffer.size())) {
      }
      ::close(fd);
    }
  });
  server.detach();  // Blocked in accept until the process exits.
  return ServeUntilTerm();
}

// Round trips in microseconds, one per iteration after the warm-up.
using Samples = std::vector<double>;

double Micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

absl::StatusOr<Samples> PingTcp(int port, int bytes, int iterations) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = Loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(errno)));
  }
  NoDelay(fd);
  std::vector<char> buffer(static_cast<size_t>(bytes), 'x');
  Samples samples;
  for (int i = -iterations / 10; i < iterations; ++i) {
    auto began = std::chrono::steady_clock::now();
    if (!WriteFull(fd, buffer.data(), buffer.size()) ||
        !ReadFull(fd, buffer.data(), buffer.size())) {
      ::close(fd);
      return absl::UnavailableError("the echo server went away");
    }
    if (i >= 0) samples.push_back(Micros(std::chrono::steady_clock::now() - began));
  }
  ::close(fd);
  return samples;
}

grpc::ByteBuffer Message(int bytes) {
  std::string data(static_cast<size_t>(bytes), 'x');
  grpc::Slice slice(data);
  return grpc::ByteBuffer(&slice, 1);
}

// Shuts `cq` down and takes what is left on it.
void ShutDown(grpc::CompletionQueue& cq) {
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
}

// Waits for `tag` (and only it: one operation at a time) on `cq`.
bool Await(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  if (!cq.Next(&got, &ok)) return false;
  return ok && got == tag;
}

absl::StatusOr<Samples> PingStream(grpc::GenericStub& stub, const char* method, int bytes,
                                   int iterations) {
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &cq);
  int tag = 0;
  call->StartCall(&tag);
  if (!Await(cq, &tag)) return absl::UnavailableError("the stream did not start");
  grpc::ByteBuffer out = Message(bytes);
  grpc::ByteBuffer in;
  Samples samples;
  for (int i = -iterations / 10; i < iterations; ++i) {
    auto began = std::chrono::steady_clock::now();
    call->Write(out, &tag);
    if (!Await(cq, &tag)) return absl::UnavailableError("a write failed");
    call->Read(&in, &tag);
    if (!Await(cq, &tag)) return absl::UnavailableError("a read failed");
    if (i >= 0) samples.push_back(Micros(std::chrono::steady_clock::now() - began));
  }
  call->WritesDone(&tag);
  Await(cq, &tag);
  grpc::Status status;
  call->Finish(&status, &tag);
  Await(cq, &tag);
  ShutDown(cq);
  return samples;
}

absl::StatusOr<Samples> PingUnary(grpc::GenericStub& stub, int bytes, int iterations) {
  grpc::CompletionQueue cq;
  grpc::ByteBuffer out = Message(bytes);
  Samples samples;
  for (int i = -iterations / 10; i < iterations; ++i) {
    auto began = std::chrono::steady_clock::now();
    grpc::ClientContext context;
    grpc::ByteBuffer in;
    grpc::Status status;
    auto call = stub.PrepareUnaryCall(&context, kUnaryMethod, out, &cq);
    int tag = 0;
    call->StartCall();
    call->Finish(&in, &status, &tag);
    if (!Await(cq, &tag) || !status.ok()) {
      return absl::UnavailableError(absl::StrCat("a call failed: ", status.error_message()));
    }
    if (i >= 0) samples.push_back(Micros(std::chrono::steady_clock::now() - began));
  }
  ShutDown(cq);
  return samples;
}

double Percentile(Samples& samples, double p) {
  size_t at = std::min(samples.size() - 1, static_cast<size_t>(p * samples.size()));
  std::nth_element(samples.begin(), samples.begin() + static_cast<ptrdiff_t>(at), samples.end());
  return samples[at];
}

absl::Status Run(int iterations, int rounds, int bytes) {
  testutil::TempDir dir;
  const int grpc_port = testutil::FreePort();
  const int tcp_port = testutil::FreePort();
  auto grpc_echo = RoleProcess::Start(
      {"--role", kGrpcRole, "--port", absl::StrCat(grpc_port), "--bytes", absl::StrCat(bytes)}, {},
      absl::StrCat(dir.path(), "/grpc-echo.log"), absl::Seconds(30));
  if (!grpc_echo.ok()) return grpc_echo.status();
  auto tcp_echo = RoleProcess::Start(
      {"--role", kTcpRole, "--port", absl::StrCat(tcp_port), "--bytes", absl::StrCat(bytes)}, {},
      absl::StrCat(dir.path(), "/tcp-echo.log"), absl::Seconds(30));
  if (!tcp_echo.ok()) return tcp_echo.status();

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", grpc_port),
                                           grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    return absl::UnavailableError("the gRPC echo server did not answer");
  }
  grpc::GenericStub stub(channel);

  const std::vector<std::string> shapes = {"tcp", "grpc stream", "grpc stream, server hop",
                                           "grpc unary"};
  std::map<std::string, std::vector<Samples>> results;
  for (int round = 0; round < rounds; ++round) {
    for (const std::string& shape : shapes) {
      absl::StatusOr<Samples> samples =
          shape == "tcp"           ? PingTcp(tcp_port, bytes, iterations)
          : shape == "grpc stream" ? PingStream(stub, kStreamMethod, bytes, iterations)
          : shape == "grpc unary"  ? PingUnary(stub, bytes, iterations)
                                   : PingStream(stub, kHopMethod, bytes, iterations);
      if (!samples.ok()) return samples.status();
      std::cerr << "  round " << round + 1 << ", " << shape << ": p50 "
                << absl::StrFormat("%.1f", Percentile(*samples, 0.5)) << " us\n";
      results[shape].push_back(std::move(*samples));
    }
  }

  std::cerr.flush();
  std::cout << "\n| shape | round trip p50 | p90 | p99 | one way (p50 / 2) |\n"
            << "| --- | --- | --- | --- | --- |\n";
  for (const std::string& shape : shapes) {
    std::string p50s, p90s, p99s, ways;
    for (Samples& s : results[shape]) {
      const char* sep = p50s.empty() ? "" : ", ";
      double p50 = Percentile(s, 0.5);
      absl::StrAppend(&p50s, sep, absl::StrFormat("%.0f", p50));
      absl::StrAppend(&p90s, sep, absl::StrFormat("%.0f", Percentile(s, 0.9)));
      absl::StrAppend(&p99s, sep, absl::StrFormat("%.0f", Percentile(s, 0.99)));
      absl::StrAppend(&ways, sep, absl::StrFormat("%.0f", p50 / 2));
    }
    std::cout << "| " << shape << " | " << p50s << " us | " << p90s << " us | " << p99s << " us | "
              << ways << " us |\n";
  }
  std::cout << "\nMethod: one client thread here, an echo server in a process of its own (this "
               "binary with --role), "
            << iterations << " round trips of " << bytes
            << " bytes per shape and round (after a tenth as many to warm up), one at a time, "
               "on 127.0.0.1; the shapes alternate within each of "
            << rounds
            << " rounds (a value per round). gRPC: the server on the callback API, the client "
               "on a completion queue its own thread polls; \"server hop\": the server starts each "
               "answer from a thread of its own, as the orchestrator answers from its engine's "
               "executor.\n";

  for (RoleProcess* child : {grpc_echo->get(), tcp_echo->get()}) {
    auto code = child->Stop(absl::Seconds(10));
    if (!code.ok()) return code.status();
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::testutil::CleanUpOnInterrupt();  // Ctrl-C leaves no data or process behind
  CLI::App app{"kiln-rpc-floor-bench: one message's round trip between two processes"};
  int iterations = 10000;
  int rounds = 3;
  int bytes = 200;
  app.add_option("--iterations", iterations, "Round trips per shape and round")
      ->check(CLI::Range(10, 10'000'000))
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds (the shapes alternate in each)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--bytes", bytes, "Message size")
      ->check(CLI::Range(1, 4 << 20))
      ->capture_default_str();
  std::string role;
  int port = 0;
  app.add_option("--role", role)
      ->check(CLI::IsMember({kiln::bench::kGrpcRole, kiln::bench::kTcpRole}))
      ->group("");
  app.add_option("--port", port)->group("");
  CLI11_PARSE(app, argc, argv);
  if (role == kiln::bench::kGrpcRole) return kiln::bench::RunGrpcEcho(port);
  if (role == kiln::bench::kTcpRole) return kiln::bench::RunTcpEcho(port, bytes);
  absl::Status status = kiln::bench::Run(iterations, rounds, bytes);
  if (!status.ok()) {
    std::cerr << "kiln-rpc-floor-bench: " << status << "\n";
    return 1;
  }
  return 0;
}
