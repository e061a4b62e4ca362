#include "worker/http/tls_front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/relay.h"
#include "common/status.h"
#include "common/tls.h"

namespace kiln::worker {
namespace {

constexpr int kMaxEvents = 128;
constexpr size_t kMinBufferBytes = 4 * 1024;
constexpr size_t kMaxBufferBytes = 1 << 20;
// Room the head keeps for the X-Forwarded-For line the front adds.
constexpr size_t kForwardedRoom = 128;
// Refusals (handshake failures, timeouts, bad heads) are logged at most this often.
constexpr absl::Duration kLogInterval = absl::Seconds(10);

enum class Phase {
  kHandshake,   // TLS handshake (skipped without TLS)
  kHead,        // reading the request's head; the backend is not connected yet
  kConnecting,  // the backend's connect is under way
  kFlowing,     // both ways
  kDraining,    // the answer is delivered; what the client still sends is dropped
};

struct Connection;

// One socket of a connection: 0 is the client, 1 the backend.
struct Endpoint {
  Connection* conn = nullptr;
  int side = 0;
  EpollInterest interest;
};

struct Connection {
  int fds[2] = {-1, -1};
  SSL* ssl = nullptr;
  Endpoint ends[2];
  BytePipe up;    // client -> backend
  BytePipe down;  // backend -> client
  Phase phase = Phase::kHandshake;
  // The last SSL call on that path wanted the other readiness (TLS reads may need writes and
  // the other way round).
  bool read_wants_write = false;
  bool write_wants_read = false;
  bool handshake_wants_write = false;
  std::string peer;
  absl::Time deadline = absl::InfiniteFuture();
  bool dead = false;
};

// OpenSSL's queued errors as text (and the queue emptied).
std::string SslErrors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "no detail" : text;
}

std::string PeerAddress(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "unknown";
  char text[INET6_ADDRSTRLEN] = {0};
  if (address.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr, text,
                sizeof(text));
  } else {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text, sizeof(text));
  }
  return text;
}

// The head with X-Forwarded-For: `peer` after the request line and every X-Forwarded-For the
// client sent dropped; empty when the head is not one we forward (a bare CR or LF, a folded
// line, no request line).
std::string RewriteHead(std::string_view head, const std::string& peer) {
  for (size_t i = 0; i < head.size(); ++i) {
    if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r')) return "";
    if (head[i] == '\r' && (i + 1 == head.size() || head[i + 1] != '\n')) return "";
  }
  // `head` ends with the blank line's CRLFCRLF.
  std::string out;
  out.reserve(head.size() + kForwardedRoom);
  size_t at = head.find("\r\n");
  if (at == 0) return "";
  out.append(head.substr(0, at + 2));
  absl::StrAppend(&out, "X-Forwarded-For: ", peer, "\r\n");
  for (size_t start = at + 2; start < head.size();) {
    const size_t end = head.find("\r\n", start);
    std::string_view line = head.substr(start, end - start);
    start = end + 2;
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return "";
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return "";
    absl::string_view name(line.data(), colon);
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(name), "x-forwarded-for")) continue;
    out.append(line);
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

}  // namespace

class TlsFront::Loop {
 public:
  Loop(TlsFrontOptions options, SSL_CTX* ctx) : options_(std::move(options)), ctx_(ctx) {}

  ~Loop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
    for (Connection* c : connections_) Free(c);
    for (Connection* c : graveyard_) delete c;
    {
      absl::MutexLock lock(&mu_);
      for (int fd : adopted_) ::close(fd);
    }
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }

  absl::Status Start() {
    // The wake-up is the only event without an endpoint.
    RETURN_IF_ERROR(OpenEventLoop(&epoll_fd_, &wake_fd_, nullptr));
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  void Adopt(int fd) {
    {
      absl::MutexLock lock(&mu_);
      if (!stop_) {
        adopted_.push_back(fd);
        fd = -1;
      }
    }
    if (fd >= 0) {
      ::close(fd);  // Stopping.
      return;
    }
    Wake();
  }

  bool tls() const { return ctx_ != nullptr; }
  int connections() const { return count_.load(); }
  uint64_t timeouts() const { return timeouts_.load(); }

 private:
  void Wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    (void)n;  // A full eventfd counter already means "wake up".
  }

  void Run() {
    epoll_event events[kMaxEvents];
    for (;;) {
      int timeout_ms = -1;
      if (!deadlines_.empty()) {
        const absl::Duration left = deadlines_.begin()->first - absl::Now();
        timeout_ms = static_cast<int>(std::max<int64_t>(
            0, absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)))));
      }
      int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
      if (n < 0 && errno != EINTR) break;  // Cannot happen with a valid epoll fd.
      bool woken = false;
      for (int i = 0; i < n; ++i) {
        auto* e = static_cast<Endpoint*>(events[i].data.ptr);
        if (e == nullptr) {
          woken = true;
        } else if (!e->conn->dead) {
          Pump(e->conn, e->side, events[i].events);
        }
      }
      Expire();
      // Freed only now: later events of the same batch may still point at them.
      for (Connection* c : graveyard_) delete c;
      graveyard_.clear();
      if (!woken) continue;
      uint64_t value = 0;
      ssize_t r = ::read(wake_fd_, &value, sizeof(value));
      (void)r;  // Nonblocking; nothing to read only means another wake-up merged into this.
      std::vector<int> adopted;
      bool stop = false;
      {
        absl::MutexLock lock(&mu_);
        adopted.swap(adopted_);
        stop = stop_;
      }
      if (stop) {
        for (int fd : adopted) ::close(fd);
        break;
      }
      for (int fd : adopted) Open(fd);
    }
  }

  void Open(int fd) {
    auto* c = new Connection;
    c->fds[0] = fd;
    c->peer = PeerAddress(fd);
    for (int side = 0; side < 2; ++side) {
      c->ends[side].conn = c;
      c->ends[side].side = side;
    }
    if (ctx_ != nullptr) {
      c->ssl = SSL_new(ctx_);
      if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
        LogRefusal("tls_setup_failed", c, SslErrors());
        if (c->ssl != nullptr) SSL_free(c->ssl);
        ::close(fd);
        delete c;
        return;
      }
      SSL_set_accept_state(c->ssl);
    } else {
      StartHead(c);
    }
    connections_.insert(c);
    count_.fetch_add(1);
    SetDeadline(c, absl::Now() + options_.handshake_timeout);
    UpdateInterest(c);
  }

  // The buffers come with the head: a connection still in its handshake (a flood's) costs
  // OpenSSL's state only.
  void StartHead(Connection* c) {
    c->phase = Phase::kHead;
    c->up.Allocate(options_.buffer_bytes);
    c->down.Allocate(options_.buffer_bytes);
  }

  void SetDeadline(Connection* c, absl::Time deadline) {
    if (c->deadline != absl::InfiniteFuture()) deadlines_.erase({c->deadline, c});
    c->deadline = deadline;
    if (deadline != absl::InfiniteFuture()) deadlines_.insert({deadline, c});
  }

  void Expire() {
    const absl::Time now = absl::Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      Connection* c = deadlines_.begin()->second;
      if (c->phase != Phase::kDraining) {
        timeouts_.fetch_add(1);
        LogRefusal("timeout", c,
                   c->phase == Phase::kHandshake ? "TLS handshake not done in time"
                                                 : "request head not received in time");
      }
      Kill(c);
    }
  }

  void LogRefusal(const char* reason, const Connection* c, const std::string& detail) {
    const absl::Time now = absl::Now();
    if (now < next_log_) return;
    next_log_ = now + kLogInterval;
    LogWarn("http.front_refused",
            {{"reason", reason}, {"peer", c->peer}, {"detail", detail}, {"tls", tls()}});
  }

  void Free(Connection* c) {
    if (c->ssl != nullptr) SSL_free(c->ssl);
    if (c->fds[0] >= 0) ::close(c->fds[0]);  // Closing also removes them from the epoll set.
    if (c->fds[1] >= 0) ::close(c->fds[1]);
    delete c;
  }

  void Kill(Connection* c) {
    if (c->dead) return;
    c->dead = true;
    SetDeadline(c, absl::InfiniteFuture());
    if (c->ssl != nullptr) SSL_free(c->ssl);
    c->ssl = nullptr;
    ::close(c->fds[0]);
    if (c->fds[1] >= 0) ::close(c->fds[1]);
    connections_.erase(c);
    graveyard_.push_back(c);
    count_.fetch_sub(1);
  }

  // Reads from the client into `up` while there is room. False when the connection died.
  bool ReadClient(Connection* c) {
    BytePipe& p = c->up;
    c->read_wants_write = false;
    const size_t limit = Limit(c);
    const bool draining = c->phase == Phase::kDraining;
    if (c->ssl == nullptr) {
      BytePipe::Io io;
      do {
        if (draining) p.Clear();  // Dropped.
        io = p.ReceiveFrom(c->fds[0], limit);
      } while (draining && io == BytePipe::Io::kBlocked && p.used() > 0);
      if (io == BytePipe::Io::kFailed) {
        Kill(c);
        return false;
      }
    }
    while (c->ssl != nullptr && !p.eof) {
      if (draining) p.Clear();
      p.Compact(limit);
      if (p.end >= limit) break;  // Full: backpressure.
      ERR_clear_error();
      const int n = SSL_read(c->ssl, p.data.get() + p.end, static_cast<int>(limit - p.end));
      if (n > 0) {
        p.end += static_cast<size_t>(n);
        continue;
      }
      const int error = SSL_get_error(c->ssl, n);
      if (error == SSL_ERROR_WANT_READ) break;
      if (error == SSL_ERROR_WANT_WRITE) {
        c->read_wants_write = true;
        break;
      }
      if (error == SSL_ERROR_ZERO_RETURN) {
        p.eof = true;
        break;
      }
      if (!draining) LogRefusal("tls_error", c, SslErrors());
      Kill(c);
      return false;
    }
    if (draining) {
      p.Clear();
      if (p.eof) {
        Kill(c);
        return false;
      }
    }
    return true;
  }

  // How far `up` may fill: while the head is read, room stays for the header the front adds.
  size_t Limit(const Connection* c) const {
    return c->phase == Phase::kHandshake || c->phase == Phase::kHead
               ? options_.buffer_bytes - kForwardedRoom
               : options_.buffer_bytes;
  }

  // Writes `down` to the client. False when the connection died.
  bool WriteClient(Connection* c) {
    BytePipe& p = c->down;
    c->write_wants_read = false;
    if (c->ssl == nullptr && p.SendTo(c->fds[0]) == BytePipe::Io::kFailed) {
      Kill(c);
      return false;
    }
    while (c->ssl != nullptr && p.used() > 0) {
      ERR_clear_error();
      const int n = SSL_write(c->ssl, p.data.get() + p.begin, static_cast<int>(p.used()));
      if (n > 0) {
        p.begin += static_cast<size_t>(n);
        continue;
      }
      const int error = SSL_get_error(c->ssl, n);
      if (error == SSL_ERROR_WANT_WRITE) break;
      if (error == SSL_ERROR_WANT_READ) {
        c->write_wants_read = true;
        break;
      }
      Kill(c);
      return false;
    }
    if (p.used() == 0) p.Clear();
    if (p.eof && p.used() == 0 && !p.shut) {
      // The backend's answer is complete: tell the client, then drop what it still sends.
      if (c->ssl != nullptr) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);  // close_notify; best effort, the FIN follows anyway.
      }
      ::shutdown(c->fds[0], SHUT_WR);
      p.shut = true;
      c->phase = Phase::kDraining;
      c->up.Clear();
      SetDeadline(c, absl::Now() + options_.handshake_timeout);
      if (c->fds[1] >= 0) {
        ::close(c->fds[1]);
        c->fds[1] = -1;
        c->ends[1].interest.Forget();
      }
    }
    return true;
  }

  // The head is whole: rewrite it in place and connect the backend. False when it died.
  bool FinishHead(Connection* c) {
    BytePipe& p = c->up;
    std::string_view buffered(p.data.get() + p.begin, p.used());
    const size_t blank = buffered.find("\r\n\r\n");
    if (blank == std::string_view::npos) {
      if (p.eof || p.end >= Limit(c)) {
        // A client that closes without a byte (a port check, the listener's own probe) is not
        // worth a log line.
        if (!p.eof || p.used() > 0) {
          LogRefusal("bad_head", c, p.eof ? "closed before the head ended" : "head too large");
        }
        Kill(c);
        return false;
      }
      return true;  // More to come.
    }
    std::string head = RewriteHead(buffered.substr(0, blank + 4), c->peer);
    const std::string rest(buffered.substr(blank + 4));
    if (head.empty() || head.size() + rest.size() > options_.buffer_bytes) {
      LogRefusal("bad_head", c, head.empty() ? "malformed head" : "head too large");
      Kill(c);
      return false;
    }
    std::memcpy(p.data.get(), head.data(), head.size());
    std::memcpy(p.data.get() + head.size(), rest.data(), rest.size());
    p.begin = 0;
    p.end = head.size() + rest.size();

    int up = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up < 0) {
      LogRefusal("backend_unavailable", c, std::strerror(errno));
      Kill(c);
      return false;
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(options_.backend_port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fds[1] = up;
    const bool connected =
        ::connect(up, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    if (!connected && errno != EINPROGRESS) {
      LogRefusal("backend_unavailable", c, std::strerror(errno));
      Kill(c);
      return false;
    }
    c->phase = connected ? Phase::kFlowing : Phase::kConnecting;
    // From here the HttpServer's own request timeout bounds the request.
    SetDeadline(c, absl::InfiniteFuture());
    return true;
  }

  // Moves whatever can move on `c` after `events` on its `side`.
  void Pump(Connection* c, int side, uint32_t events) {
    if (c->phase == Phase::kHandshake) {
      ERR_clear_error();
      const int r = SSL_do_handshake(c->ssl);
      if (r != 1) {
        const int error = SSL_get_error(c->ssl, r);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
          c->handshake_wants_write = error == SSL_ERROR_WANT_WRITE;
          UpdateInterest(c);
          return;
        }
        // A client that closes without a byte (a port check, the listener's own probe) is not
        // worth a log line.
        if (BIO_number_read(SSL_get_rbio(c->ssl)) > 0) {
          LogRefusal("tls_handshake_failed", c, SslErrors());
        }
        Kill(c);
        return;
      }
      StartHead(c);
    }
    if (c->phase == Phase::kConnecting && side == 1 &&
        (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(c->fds[1], SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        LogRefusal("backend_unavailable", c, std::strerror(error));
        Kill(c);
        return;
      }
      c->phase = Phase::kFlowing;
    }
    if (!ReadClient(c)) return;
    if (c->phase == Phase::kHead && !FinishHead(c)) return;
    if (c->phase == Phase::kFlowing) {
      // Client to backend. A backend that stopped reading (it answered early, e.g. 413) gets
      // no more of the request; its answer keeps coming.
      BytePipe& up = c->up;
      if (!up.shut && up.SendTo(c->fds[1]) == BytePipe::Io::kFailed) up.shut = true;
      if (up.shut) up.Clear();
      if (up.eof && up.used() == 0 && !up.shut) {
        ::shutdown(c->fds[1], SHUT_WR);  // The half-close, passed on.
        up.shut = true;
      }
      // Backend to client; a reset delivers what arrived.
      if (c->down.ReceiveFrom(c->fds[1]) == BytePipe::Io::kFailed) c->down.eof = true;
    }
    if (c->phase == Phase::kFlowing || c->phase == Phase::kDraining) {
      if (!WriteClient(c)) return;
      // Reading again: a TLS write may have consumed what a read waited for, and draining
      // continues.
      if (!ReadClient(c)) return;
    }
    UpdateInterest(c);
  }

  // Level-triggered interest (EpollInterest) from what each side waits for.
  void UpdateInterest(Connection* c) {
    uint32_t want[2] = {0, 0};
    if (c->phase == Phase::kHandshake) {
      want[0] = c->handshake_wants_write ? EPOLLOUT : EPOLLIN;
    } else {
      const BytePipe& up = c->up;
      const bool room = !up.Full(Limit(c));
      const bool reading = !up.eof && (room || c->phase == Phase::kDraining);
      const bool writing = c->phase == Phase::kFlowing && c->down.used() > 0;
      if (reading) want[0] |= c->read_wants_write ? EPOLLOUT : EPOLLIN;
      if (writing) want[0] |= c->write_wants_read ? EPOLLIN : EPOLLOUT;
      if (c->phase == Phase::kConnecting) want[1] = EPOLLOUT;
      if (c->phase == Phase::kFlowing) {
        const BytePipe& down = c->down;
        if (!down.eof && !down.Full(down.capacity)) want[1] |= EPOLLIN;
        if (up.used() > 0 && !up.shut) want[1] |= EPOLLOUT;
      }
    }
    for (int side = 0; side < 2; ++side) {
      if (c->fds[side] >= 0)
        c->ends[side].interest.Set(epoll_fd_, c->fds[side], want[side], &c->ends[side]);
    }
  }

  const TlsFrontOptions options_;
  SSL_CTX* const ctx_;  // null: plain HTTP
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<int> count_{0};
  std::atomic<uint64_t> timeouts_{0};

  absl::Mutex mu_;
  std::vector<int> adopted_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  // Touched by the loop thread only (and by the destructor once it has joined).
  std::set<Connection*> connections_;
  std::set<std::pair<absl::Time, Connection*>> deadlines_;
  std::vector<Connection*> graveyard_;
  absl::Time next_log_ = absl::InfinitePast();
};

namespace {

// The server context: certificate chain and key, TLS 1.2 at least, no renegotiation, and with a
// client CA, a client certificate it signed required.
absl::StatusOr<SSL_CTX*> MakeContext(const TlsFrontOptions& options) {
  const std::string& prefix = options.flag_prefix;
  // Read first, for the same "cannot read" errors as the gRPC listeners.
  RETURN_IF_ERROR(ReadPemFile(options.cert_file, absl::StrCat(prefix, "-cert")).status());
  RETURN_IF_ERROR(ReadPemFile(options.key_file, absl::StrCat(prefix, "-key")).status());
  if (!options.client_ca_file.empty()) {
    RETURN_IF_ERROR(
        ReadPemFile(options.client_ca_file, absl::StrCat(prefix, "-client-ca")).status());
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", SslErrors()));
  auto fail = [ctx](const std::string& flag, const std::string& path) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot use '", path, "': ", SslErrors()));
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // A raw EOF reads as the end (HTTP closes carry no close_notify often); renegotiation is a
  // way to make the server work without end.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
    return fail(absl::StrCat(prefix, "-cert"), options.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return fail(absl::StrCat(prefix, "-key"), options.key_file);
  }
  if (!options.client_ca_file.empty()) {
    const char* ca = options.client_ca_file.c_str();
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca);
    if (SSL_CTX_load_verify_locations(ctx, ca, nullptr) != 1 || names == nullptr) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return fail(absl::StrCat(prefix, "-client-ca"), options.client_ca_file);
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // Owns `names` now.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

}  // namespace

TlsFront::TlsFront(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}
TlsFront::~TlsFront() = default;

absl::StatusOr<std::unique_ptr<TlsFront>> TlsFront::Create(TlsFrontOptions options) {
  if (options.backend_port <= 0 || options.backend_port > 65535) {
    return absl::InvalidArgumentError("http front: backend port out of range");
  }
  if (options.buffer_bytes < kMinBufferBytes || options.buffer_bytes > kMaxBufferBytes) {
    return absl::InvalidArgumentError("http front: buffer_bytes out of range");
  }
  if (options.handshake_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("http front: handshake_timeout must be positive");
  }
  const bool any =
      !options.cert_file.empty() || !options.key_file.empty() || !options.client_ca_file.empty();
  if (any && (options.cert_file.empty() || options.key_file.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.flag_prefix, "-cert and ", options.flag_prefix, "-key: give both (or neither)"));
  }
  SSL_CTX* ctx = nullptr;
  if (any) {
    ASSIGN_OR_RETURN(ctx, MakeContext(options));
    // OpenSSL writes to the socket with write(2): a client gone away must not kill the process
    // with SIGPIPE (kiln-worker ignores it already; a test binary may not).
    ::signal(SIGPIPE, SIG_IGN);
  }
  auto loop = std::make_unique<Loop>(std::move(options), ctx);
  RETURN_IF_ERROR(loop->Start());
  return std::unique_ptr<TlsFront>(new TlsFront(std::move(loop)));
}

void TlsFront::Adopt(int fd) { loop_->Adopt(fd); }
bool TlsFront::tls() const { return loop_->tls(); }
int TlsFront::connections() const { return loop_->connections(); }
uint64_t TlsFront::timeouts() const { return loop_->timeouts(); }

}  // namespace kiln::worker
