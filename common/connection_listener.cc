#include "common/connection_listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiln {
namespace {

// How often connections their owner closed are looked for when nothing forces it.
constexpr absl::Duration kSweepInterval = absl::Seconds(1);
// After an accept error that is not "nothing pending" (out of descriptors, ENOBUFS), the loop
// waits this long before trying again rather than spinning on a readable socket.
constexpr int kBackoffMs = 50;
// Refusals are logged at most this often (a flood would otherwise flood the log).
constexpr absl::Duration kRefusalLogInterval = absl::Seconds(10);

std::string ErrnoText(int error) { return std::strerror(error); }

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionListener>> ConnectionListener::Bind(
    ConnectionListenerOptions options) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options.port);
  int resolved = ::getaddrinfo(options.host.empty() ? nullptr : options.host.c_str(), port.c_str(),
                               &hints, &found);
  if (resolved != 0) {
    return absl::InvalidArgumentError(absl::StrCat(options.flag, ": cannot resolve '", options.host,
                                                   "': ", ::gai_strerror(resolved)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  // IPv4 first: "localhost" then means 127.0.0.1, which every client tries.
  std::vector<addrinfo*> candidates;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) candidates.push_back(a);
  std::stable_partition(candidates.begin(), candidates.end(),
                        [](const addrinfo* a) { return a->ai_family == AF_INET; });
  std::string last_error = "no address";
  for (addrinfo* a : candidates) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      last_error = ErrnoText(errno);
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
    int bound_port = bound.ss_family == AF_INET6
                         ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                         : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return std::unique_ptr<ConnectionListener>(
        new ConnectionListener(std::move(options), fd, bound_port));
  }
  return absl::UnavailableError(absl::StrCat(options.flag, ": cannot listen on '", options.host,
                                             ":", options.port, "': ", last_error));
}

ConnectionListener::ConnectionListener(ConnectionListenerOptions options, int listen_fd, int port)
    : options_(std::move(options)), listen_fd_(listen_fd), port_(port) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

ConnectionListener::~ConnectionListener() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

void ConnectionListener::StartGrpc(
    std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor) {
  acceptor_ = std::move(acceptor);
  Start([this](int fd) {
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters connection;
    connection.listener_fd = listen_fd_;
    connection.fd = fd;
    acceptor_->HandleNewConnection(&connection);
  });
}

void ConnectionListener::Start(HandOff hand_off) {
  hand_off_ = std::move(hand_off);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  if (options_.probe_interval > absl::ZeroDuration()) {
    probe_thread_ = std::thread([this] { ProbeLoop(); });
  }
}

void ConnectionListener::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof(one));  // A full eventfd already wakes the loop.
  if (accept_thread_.joinable()) accept_thread_.join();
  if (probe_thread_.joinable()) probe_thread_.join();
  ::close(listen_fd_);
}

int ConnectionListener::open_connections() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(open_.size());
}

void ConnectionListener::SweepLocked() {
  for (auto it = open_.begin(); it != open_.end();) {
    struct stat st {};
    if (::fstat(it->first, &st) != 0 || st.st_ino != it->second || !S_ISSOCK(st.st_mode)) {
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
}

void ConnectionListener::Refuse(int fd, const char* why) {
  ::close(fd);
  uint64_t refused = refused_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (absl::Now() >= next_refusal_log_) {
    LogWarn("listener.connection_refused", {{"listener", options_.name},
                                            {"reason", why},
                                            {"refused_total", refused},
                                            {"max_connections", options_.max_connections}});
    next_refusal_log_ = absl::Now() + kRefusalLogInterval;
  }
}

void ConnectionListener::AcceptLoop() {
  absl::Time next_sweep = absl::Now() + kSweepInterval;
  bool backoff = false;
  for (;;) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    // After an error, only the wake-up is watched for a moment: the listening socket stays
    // readable and would spin the loop.
    (void)::poll(fds, backoff ? 1 : 2, backoff ? kBackoffMs : 200);
    backoff = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (absl::Now() >= next_sweep) {
        SweepLocked();
        next_sweep = absl::Now() + kSweepInterval;
      }
    }
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const int error = errno;
        if (error == EINTR || error == ECONNABORTED) continue;
        if (error == EAGAIN || error == EWOULDBLOCK) break;
        if (error == EMFILE || error == ENFILE) {
          // The reserve makes room to take the waiting connection off the queue and close it,
          // so that its client hears at once and the queue does not stay full.
          if (reserve_fd_ >= 0) {
            ::close(reserve_fd_);
            reserve_fd_ = -1;
          }
          int pending = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (pending >= 0) Refuse(pending, "out of file descriptors");
          reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          if (pending >= 0) continue;
        } else {
          LogWarn("listener.accept_failed",
                  {{"listener", options_.name}, {"error", ErrnoText(error)}});
        }
        backoff = true;
        break;
      }
      bool room;
      {
        absl::MutexLock lock(&mu_);
        if (static_cast<int>(open_.size()) >= options_.max_connections) SweepLocked();
        room = static_cast<int>(open_.size()) < options_.max_connections;
        if (room) {
          struct stat st {};
          ::fstat(fd, &st);
          open_[fd] = st.st_ino;
        }
      }
      if (!room) {
        Refuse(fd, "connection cap (--max-connections) reached");
        continue;
      }
      int one = 1;
      (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      hand_off_(fd);  // Its owner's from here.
      accepted_.fetch_add(1, std::memory_order_release);
    }
  }
}

bool ConnectionListener::Probe() {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return false;
  // A wildcard listener is reached through loopback.
  if (address.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
    if (v4->sin_addr.s_addr == htonl(INADDR_ANY)) v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (address.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    if (IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr)) v6->sin6_addr = in6addr_loopback;
  }
  int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const absl::Time deadline = absl::Now() + options_.probe_timeout;
  // The events that came on `fd` by the deadline; none when Stop (the wake-up, which stays
  // readable once written) cuts the wait short.
  auto wait = [&](short events) -> short {
    pollfd p[2] = {{fd, events, 0}, {wake_fd_, POLLIN, 0}};
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0 || ::poll(p, 2, ms) <= 0 || p[1].revents != 0) return 0;
    return p[0].revents;
  };
  const uint64_t accepted_before = accepted_.load(std::memory_order_acquire);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) == 0 || errno == EINPROGRESS) {
    int error = 0;
    socklen_t error_length = sizeof(error);
    if ((wait(POLLOUT) & POLLOUT) != 0 &&
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length) == 0 && error == 0) {
      // Accepted and handed off: a gRPC server's HTTP/2 settings arrive (or, with TLS or
      // HTTP/1, nothing until the client speaks). Closed at once: the cap or a lack of descriptors
      // refused it. Nothing and nothing accepted: nobody accepts.
      char byte;
      if ((wait(POLLIN) & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ok = ::read(fd, &byte, 1) == 1;
      } else {
        ok = accepted_.load(std::memory_order_acquire) > accepted_before;
      }
    }
  }
  ::close(fd);
  return ok;
}

void ConnectionListener::ProbeLoop() {
  std::optional<bool> last;
  for (;;) {
    bool accepting = Probe();
    if (last != accepting) {
      if (last.has_value() || !accepting) {
        LogInfo("listener.accepting", {{"listener", options_.name},
                                       {"accepting", accepting},
                                       {"open_connections", open_connections()},
                                       {"refused_total", refused()}});
      }
      if (options_.on_accepting) options_.on_accepting(accepting);
      last = accepting;
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.probe_interval)) return;
  }
}

}  // namespace kiln
