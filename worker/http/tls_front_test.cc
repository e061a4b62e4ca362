// The webhook endpoint over HTTPS, as a client meets it: a real WebhookServer on 127.0.0.1 with
// certificates the test makes, an OpenSSL client, GitHub-shaped deliveries, and raw sockets
// that misbehave (plain text, silence, a flood).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/testutil/http.h"
#include "tests/testutil/process.h"
#include "tests/testutil/tls.h"
#include "worker/http/fake_webhook_backend.h"
#include "worker/http/github_signature.h"
#include "worker/http/webhook_server.h"

namespace kiln::worker {
namespace {

using testutil::HttpCallOptions;
using testutil::HttpReply;
using testutil::TlsClientOptions;

constexpr char kSecret[] = "s3cr3t-for-hello-world";

std::string Payload(const std::string& name) {
  std::ifstream in(std::string(KILN_WEBHOOK_TESTDATA) + "/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A plain TCP connection to 127.0.0.1:port (nothing sent), closed on destruction.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // The kernel completes the handshake from the listen queue whether or not the server
    // accepts: every connect succeeds.
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void Send(const std::string& data) {
    REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(data.size()));
  }
  // True when the server has closed the connection (EOF or reset) within `timeout`; what it
  // sent before is appended to `received`.
  bool ClosedWithin(absl::Duration timeout, std::string* received = nullptr) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, ms) != 1) return false;
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return true;
      if (received != nullptr) received->append(buffer, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

struct Certificates {
  Certificates() {
    REQUIRE(testutil::MakeCertificate(dir.path(), "server").ok());
    REQUIRE(testutil::MakeCertificate(dir.path(), "client").ok());
    REQUIRE(testutil::MakeCertificate(dir.path(), "stranger").ok());
  }
  std::string File(const std::string& name) const { return dir.path() + "/" + name; }
  // What a client that trusts the server's certificate sends.
  TlsClientOptions Client(const std::string& name = "") const {
    TlsClientOptions options;
    options.ca_file = File("server.pem");
    if (!name.empty()) {
      options.cert_file = File(name + ".pem");
      options.key_file = File(name + ".key");
    }
    return options;
  }
  testutil::TempDir dir;
};

struct Fixture {
  explicit Fixture(const Certificates& certificates, WebhookServerOptions options = {}) {
    backend.SetProjects({{"hello", "https://github.com/octo-org/Hello-World", kSecret}});
    options.tls_cert_file = certificates.File("server.pem");
    options.tls_key_file = certificates.File("server.key");
    options.threads = 2;
    options.on_accepting = [this](bool accepting) {
      if (!accepting) refusing_reports.fetch_add(1);
      last_report = accepting ? 1 : 0;
    };
    auto started = WebhookServer::Start(options, &backend);
    REQUIRE(started.ok());
    server = *std::move(started);
    // Who the handlers think they serve.
    server->http()->Handle("/whoami", [](const HttpRequest& request) {
      HttpResponse response;
      int forwarded = 0;
      for (const HttpHeader& h : request.headers) {
        if (absl::EqualsIgnoreCase(h.name, "X-Forwarded-For")) ++forwarded;
      }
      response.body = absl::StrCat(request.remote_addr, " ", forwarded);
      return response;
    });
  }

  std::atomic<int> refusing_reports{0};
  std::atomic<int> last_report{-1};  // the self-probe's last outcome (1 accepting), -1 none
  FakeWebhookBackend backend;        // Outlives the server.
  std::unique_ptr<WebhookServer> server;
};

HttpCallOptions SignedPush(const std::string& delivery, const std::string& body) {
  HttpCallOptions options;
  options.headers = {{"User-Agent", "GitHub-Hookshot/044aadd"},
                     {"Content-Type", "application/json"},
                     {"X-GitHub-Event", "push"},
                     {"X-GitHub-Delivery", delivery},
                     {"X-GitHub-Hook-ID", "109948940"},
                     {"X-Hub-Signature-256", GithubSignature(kSecret, body)}};
  options.body = body;
  return options;
}

TEST_CASE("HTTPS front: a signed GitHub push is accepted over TLS") {
  Certificates certificates;
  Fixture f(certificates);
  auto health = testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client());
  REQUIRE(health.ok());
  CHECK(health->status == 200);

  const std::string push = Payload("push.json");
  auto reply = testutil::HttpsCall(f.server->port(), "POST", "/webhooks/github",
                                   certificates.Client(), SignedPush("d-tls-1", push));
  REQUIRE(reply.ok());
  CHECK(reply->status == 202);
  auto pushes = f.backend.pushes();
  REQUIRE(pushes.size() == 1);
  CHECK(pushes[0].project_id == "hello");
  CHECK(pushes[0].branch == "main");

  // A payload larger than the front's buffers (several round trips each way) arrives whole.
  std::string big = push;
  big.insert(1, "\"padding\":\"" + std::string(200 * 1024, 'p') + "\",");
  reply = testutil::HttpsCall(f.server->port(), "POST", "/webhooks/github", certificates.Client(),
                              SignedPush("d-tls-2", big));
  REQUIRE(reply.ok());
  CHECK(reply->status == 202);
  CHECK(f.backend.pushes().size() == 2);

  // The handler sees the client's address, once, whatever the client claims.
  HttpCallOptions forged;
  forged.headers = {{"X-Forwarded-For", "203.0.113.9"}, {"x-forwarded-for ", "198.51.100.7"}};
  auto whoami =
      testutil::HttpsCall(f.server->port(), "GET", "/whoami", certificates.Client(), forged);
  REQUIRE(whoami.ok());
  CHECK(whoami->body == "127.0.0.1 1");
  // A server certificate the client does not trust: the client refuses it.
  TlsClientOptions untrusting;
  untrusting.ca_file = certificates.File("stranger.pem");
  CHECK(!testutil::HttpsCall(f.server->port(), "GET", "/healthz", untrusting).ok());
}

TEST_CASE("HTTPS front: plain HTTP to the TLS port gets no answer") {
  Certificates certificates;
  Fixture f(certificates);
  auto plain = testutil::HttpCall(f.server->port(), "GET", "/healthz");
  CHECK(!plain.ok());
  const std::string push = Payload("push.json");
  RawConnection raw(f.server->port());
  raw.Send(testutil::FormatHttpRequest(f.server->port(), "POST", "/webhooks/github",
                                       SignedPush("d-plain", push)) +
           push);
  std::string received;
  CHECK(raw.ClosedWithin(absl::Seconds(10), &received));
  CHECK(received.find("HTTP/1.1") == std::string::npos);
  CHECK(f.backend.calls() == 0);
}

TEST_CASE("HTTPS front: with a client CA only its certificates get through") {
  Certificates certificates;
  Fixture f(certificates, [&] {
    WebhookServerOptions o;
    o.tls_client_ca_file = certificates.File("client.pem");
    return o;
  }());
  auto mutual =
      testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client("client"));
  REQUIRE(mutual.ok());
  CHECK(mutual->status == 200);
  // No certificate, or one the CA did not sign: no answer (TLS 1.3 clients hear it at their
  // first read).
  CHECK(!testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client()).ok());
  CHECK(!testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client("stranger"))
             .ok());
  const std::string push = Payload("push.json");
  CHECK(!testutil::HttpsCall(f.server->port(), "POST", "/webhooks/github",
                             certificates.Client("stranger"), SignedPush("d-stranger", push))
             .ok());
  CHECK(f.backend.calls() == 0);
}

TEST_CASE("HTTPS front: a handshake or head that never finishes times out without blocking") {
  Certificates certificates;
  WebhookServerOptions options;
  options.handshake_timeout = absl::Seconds(1);
  Fixture f(certificates, options);
  // Silent; half a ClientHello; more connections than civetweb has threads (2).
  std::vector<std::unique_ptr<RawConnection>> stalled;
  for (int i = 0; i < 4; ++i) stalled.push_back(std::make_unique<RawConnection>(f.server->port()));
  stalled[1]->Send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
  // While they hang, others are served at once (long before the stalled ones time out).
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) {
    auto health = testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client());
    REQUIRE(health.ok());
    CHECK(health->status == 200);
  }
  CHECK(absl::Now() - start < absl::Milliseconds(900));
  for (auto& connection : stalled) CHECK(connection->ClosedWithin(absl::Seconds(10)));
  CHECK(f.server->front().timeouts() >= 4);
  CHECK(testutil::WaitFor([&] { return f.server->front().connections() == 0; }, absl::Seconds(10)));

  // A client that finishes TLS but sends half a head is closed too (civetweb never sees it).
  std::atomic<bool> done{false};
  std::thread half([&] {
    testutil::TlsClientOptions slow = certificates.Client();
    auto answer = testutil::TlsExchange(f.server->port(), "GET /healthz HTTP/1.1\r\nHost: x", slow);
    CHECK((!answer.ok() || answer->empty()));
    done = true;
  });
  CHECK(testutil::WaitFor([&] { return done.load(); }, absl::Seconds(10)));
  half.join();
}

TEST_CASE("HTTPS front: a flood past the connection cap is closed and the port serves after") {
  Certificates certificates;
  WebhookServerOptions options;
  options.max_connections = 8;
  options.probe_interval = absl::Milliseconds(100);
  options.handshake_timeout = absl::Seconds(60);  // The flood's connections stay while it lasts.
  Fixture f(certificates, options);
  {
    std::vector<std::unique_ptr<RawConnection>> flood;
    for (int i = 0; i < 40; ++i) flood.push_back(std::make_unique<RawConnection>(f.server->port()));
    int closed = 0;
    for (auto& connection : flood) {
      if (connection->ClosedWithin(absl::Milliseconds(200))) ++closed;
    }
    CHECK(closed >= 40 - 8);
    CHECK(f.server->listener().refused() >= 32);
    // At the cap the self-probe is refused like everyone else, and says so. The flood goes on
    // (a slot the probe's own connection frees goes to the next comer, as in a real flood).
    absl::Time next = absl::Now();
    CHECK(testutil::WaitFor(
        [&] {
          if (absl::Now() >= next && flood.size() < 400) {
            flood.push_back(std::make_unique<RawConnection>(f.server->port()));
            next += absl::Milliseconds(50);
          }
          return f.refusing_reports.load() > 0;
        },
        absl::Seconds(20)));
    auto refused = testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client());
    CHECK(!refused.ok());
  }
  // The flood gone, new clients are served and the probe passes again.
  CHECK(testutil::WaitFor(
      [&] {
        auto health =
            testutil::HttpsCall(f.server->port(), "GET", "/healthz", certificates.Client());
        return health.ok() && health->status == 200;
      },
      absl::Seconds(20)));
  CHECK(testutil::WaitFor([&] { return f.last_report.load() == 1; }, absl::Seconds(20)));
}

TEST_CASE("HTTP front: a head another parser could read differently is refused") {
  FakeWebhookBackend backend;
  WebhookServerOptions options;  // No certificate: plain HTTP through the same front.
  auto started = WebhookServer::Start(options, &backend);
  REQUIRE(started.ok());
  std::unique_ptr<WebhookServer> server = *std::move(started);
  server->http()->Handle("/whoami", [](const HttpRequest& request) {
    HttpResponse response;
    response.body = request.remote_addr;
    return response;
  });
  HttpCallOptions forged;
  forged.headers = {{"X-Forwarded-For", "203.0.113.9"}};
  auto plain = testutil::HttpCall(server->port(), "GET", "/whoami", forged);
  REQUIRE(plain.ok());
  CHECK(plain->body == "127.0.0.1");
  // A bare LF (where the forged header would end the head for a lenient parser) and a folded
  // line: closed, unanswered.
  for (const std::string head :
       {"GET /whoami HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9\nHost: x\r\n\r\n",
        "GET /whoami HTTP/1.1\r\nHost: x\r\n X-Forwarded-For: 1.2.3.4\r\n\r\n", "\r\n\r\n"}) {
    RawConnection raw(server->port());
    raw.Send(head);
    std::string received;
    CHECK(raw.ClosedWithin(absl::Seconds(5), &received));
    CHECK(received.empty());
  }
}

}  // namespace
}  // namespace kiln::worker
