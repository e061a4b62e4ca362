// PortProxy with plain sockets on 127.0.0.1: the "container" is a listening socket of the test.
#include "worker/deploy/port_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <thread>

#include "tests/testutil/process.h"

namespace kiln::worker {
namespace {

constexpr int kTimeoutMs = 5000;

// A socket closed on destruction.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

void SetTimeouts(int fd) {
  timeval tv{kTimeoutMs / 1000, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// A backend: a listening socket on a free port.
struct Backend {
  Fd listener;
  int port = 0;
  Backend() {
    listener = Fd(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr = Loopback(0);
    REQUIRE(::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listener.fd, 64) == 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  // The next connection, or -1 when none arrives within `timeout_ms`.
  Fd Accept(int timeout_ms = kTimeoutMs) {
    pollfd p{listener.fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return Fd();
    Fd fd(::accept(listener.fd, nullptr, nullptr));
    SetTimeouts(fd.fd);
    return fd;
  }
};

Fd Connect(int port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr = Loopback(port);
  if (::connect(fd.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return Fd();
  SetTimeouts(fd.fd);
  return fd;
}

void SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  REQUIRE(sent == data.size());
}

// Reads exactly `n` bytes (less on EOF or timeout).
std::string Recv(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    ssize_t r = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// True when the peer closed (recv returns 0 or a reset) within the timeout.
bool SeesEof(int fd) {
  char c;
  ssize_t r = ::recv(fd, &c, 1, 0);
  return r == 0 || (r < 0 && errno == ECONNRESET);
}

std::unique_ptr<PortProxy> NewProxy(PortProxyOptions options = {}) {
  auto proxy = PortProxy::Create(options);
  REQUIRE(proxy.ok());
  return std::move(*proxy);
}

TEST_CASE("the proxy forwards both ways and passes a half-close on", "[proxy]") {
  Backend backend;
  auto proxy = NewProxy();
  auto port = proxy->Listen(0, backend.port);
  REQUIRE(port.ok());
  CHECK(*port != 0);

  Fd client = Connect(*port);
  REQUIRE(client.fd >= 0);
  Fd server = backend.Accept();
  REQUIRE(server.fd >= 0);
  SendAll(client.fd, "hello");
  CHECK(Recv(server.fd, 5) == "hello");
  SendAll(server.fd, "world!");
  CHECK(Recv(client.fd, 6) == "world!");
  CHECK(proxy->connections() == 1);  // Counted before the bytes could flow.

  // The client is done sending: the backend sees EOF, yet can still answer.
  REQUIRE(::shutdown(client.fd, SHUT_WR) == 0);
  CHECK(SeesEof(server.fd));
  SendAll(server.fd, "late answer");
  CHECK(Recv(client.fd, 11) == "late answer");
  server = Fd();  // The backend closes: the client sees EOF and the proxy lets go.
  CHECK(SeesEof(client.fd));
  CHECK(testutil::WaitFor([&] { return proxy->connections() == 0; }, absl::Seconds(5)));
}

TEST_CASE("a small buffer still carries a large transfer both ways (backpressure)", "[proxy]") {
  Backend backend;
  PortProxyOptions options;
  options.buffer_bytes = 1024;
  auto proxy = NewProxy(options);
  auto port = proxy->Listen(0, backend.port);
  REQUIRE(port.ok());
  Fd client = Connect(*port);
  Fd server = backend.Accept();
  REQUIRE(server.fd >= 0);

  std::string up(3 << 20, '\0');
  std::string down(3 << 20, '\0');
  for (size_t i = 0; i < up.size(); ++i) {
    up[i] = static_cast<char>(i * 7 + i / 4096);
    down[i] = static_cast<char>(i * 13 + 1);
  }
  // Both sides send everything before reading anything: only the proxy's backpressure (its
  // buffers full, TCP windows closed) keeps this from losing data.
  std::thread client_sender([&] { SendAll(client.fd, up); });
  std::thread server_sender([&] { SendAll(server.fd, down); });
  std::string got_up = Recv(server.fd, up.size());
  std::string got_down = Recv(client.fd, down.size());
  client_sender.join();
  server_sender.join();
  CHECK(got_up.size() == up.size());
  CHECK(got_up == up);
  CHECK(got_down == down);
}

TEST_CASE("retarget sends new connections to the new target, old ones stay", "[proxy]") {
  Backend v1, v2;
  auto proxy = NewProxy();
  auto port = proxy->Listen(0, v1.port);
  REQUIRE(port.ok());
  Fd old_client = Connect(*port);
  Fd old_server = v1.Accept();
  REQUIRE(old_server.fd >= 0);

  REQUIRE(proxy->Retarget(*port, v2.port).ok());
  Fd new_client = Connect(*port);
  Fd new_server = v2.Accept();
  REQUIRE(new_server.fd >= 0);
  CHECK(v1.Accept(200).fd < 0);  // Nothing new reached the old target.

  SendAll(old_client.fd, "old");
  CHECK(Recv(old_server.fd, 3) == "old");
  SendAll(new_client.fd, "new");
  CHECK(Recv(new_server.fd, 3) == "new");
  SendAll(old_server.fd, "still here");
  CHECK(Recv(old_client.fd, 10) == "still here");

  CHECK(absl::IsNotFound(proxy->Retarget(1, v2.port)));
  CHECK(absl::IsAlreadyExists(proxy->Listen(*port, v2.port).status()));
}

TEST_CASE("past the connection limit a connection is accepted and closed", "[proxy]") {
  Backend backend;
  PortProxyOptions options;
  options.max_connections = 2;
  auto proxy = NewProxy(options);
  auto port = proxy->Listen(0, backend.port);
  REQUIRE(port.ok());
  Fd a = Connect(*port);
  Fd a_server = backend.Accept();
  Fd b = Connect(*port);
  Fd b_server = backend.Accept();
  REQUIRE(a_server.fd >= 0);
  REQUIRE(b_server.fd >= 0);
  // The proxy counts a connection just after it connected upstream.
  CHECK(testutil::WaitFor([&] { return proxy->connections() == 2; }, absl::Seconds(5)));

  Fd c = Connect(*port);  // The kernel accepts it; the proxy closes it.
  REQUIRE(c.fd >= 0);
  CHECK(SeesEof(c.fd));
  CHECK(backend.Accept(200).fd < 0);

  // The first two still work; once one ends there is room again.
  SendAll(a.fd, "a");
  CHECK(Recv(a_server.fd, 1) == "a");
  a = Fd();
  a_server = Fd();
  CHECK(testutil::WaitFor([&] { return proxy->connections() == 1; }, absl::Seconds(5)));
  Fd d = Connect(*port);
  Fd d_server = backend.Accept();
  REQUIRE(d_server.fd >= 0);
  SendAll(d.fd, "d");
  CHECK(Recv(d_server.fd, 1) == "d");
}

TEST_CASE("close stops listening and ends the port's connections, target 0 holds", "[proxy]") {
  Backend backend;
  auto proxy = NewProxy();
  auto port = proxy->Listen(0, 0);  // Held, nothing to forward to yet.
  REQUIRE(port.ok());
  Fd early = Connect(*port);
  REQUIRE(early.fd >= 0);
  CHECK(SeesEof(early.fd));

  REQUIRE(proxy->Retarget(*port, backend.port).ok());
  Fd client = Connect(*port);
  Fd server = backend.Accept();
  REQUIRE(server.fd >= 0);
  REQUIRE(proxy->Close(*port).ok());
  CHECK(SeesEof(client.fd));
  CHECK(Connect(*port).fd < 0);  // Refused: nobody listens.
  CHECK(proxy->connections() == 0);
  CHECK(absl::IsNotFound(proxy->Close(*port)));

  // A target that refuses: the client's connection is closed, nothing leaks.
  Backend gone;
  int dead_port = gone.port;
  gone.listener = Fd();
  auto port2 = proxy->Listen(0, dead_port);
  REQUIRE(port2.ok());
  Fd refused = Connect(*port2);
  REQUIRE(refused.fd >= 0);
  CHECK(SeesEof(refused.fd));
  CHECK(testutil::WaitFor([&] { return proxy->connections() == 0; }, absl::Seconds(5)));
}

}  // namespace
}  // namespace kiln::worker
