#include "worker/deploy/port_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/relay.h"
#include "common/status.h"

namespace kiln::worker {
namespace {

constexpr int kMaxEvents = 128;
// Accepts per listener wake-up, so one busy port cannot starve the others.
constexpr int kMaxAcceptsPerWake = 64;
constexpr int kListenBacklog = 512;
constexpr size_t kMaxBufferBytes = 1 << 20;
// Descriptors besides the connections' two each: listeners, epoll, eventfd and some margin.
constexpr rlim_t kSpareDescriptors = kMaxProxyListeners + 64;

enum class Kind { kWake, kListener, kEndpoint };

struct Handle {
  Kind kind;
};

struct Listener : Handle {
  int fd = -1;
  int port = 0;
  int target = 0;
};

struct Connection;

// One socket of a connection: 0 is the client, 1 the upstream (the container).
struct Endpoint : Handle {
  Connection* conn = nullptr;
  int side = 0;
  EpollInterest interest;
};

struct Connection {
  int fds[2] = {-1, -1};
  Endpoint ends[2];
  // pipes[i]: bytes read from fds[i] wait here until written to fds[1 - i].
  BytePipe pipes[2];
  bool connecting = true;
  bool dead = false;
  int listener_port = 0;
};

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

}  // namespace

class PortProxy::Loop {
 public:
  explicit Loop(PortProxyOptions options) : options_(options) { wake_.kind = Kind::kWake; }

  ~Loop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
    for (Connection* c : connections_) {
      ::close(c->fds[0]);
      ::close(c->fds[1]);
      delete c;
    }
    for (auto& [port, l] : listeners_) {
      ::close(l->fd);
      delete l;
    }
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  absl::Status Start() {
    RETURN_IF_ERROR(OpenEventLoop(&epoll_fd_, &wake_fd_, &wake_));
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  // Runs `fn` on the loop thread and waits for it: the proxy's state is the loop's alone.
  void Call(std::function<void()> fn) {
    absl::Notification done;
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back([&] {
        fn();
        done.Notify();
      });
    }
    Wake();
    done.WaitForNotification();
  }

  absl::StatusOr<int> DoListen(int public_port, int target_port) {
    if (listeners_.count(public_port) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("port ", public_port, " is already proxied"));
    }
    if (listeners_.size() >= kMaxProxyListeners) {
      return absl::ResourceExhaustedError("too many proxied ports");
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr = Loopback(public_port);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd, kListenBacklog) != 0) {
      int err = errno;
      ::close(fd);
      return absl::UnavailableError(
          absl::StrCat("cannot listen on 127.0.0.1:", public_port, ": ", std::strerror(err)));
    }
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    int port = ntohs(addr.sin_port);
    if (listeners_.count(port) != 0) {  // Port 0 cannot hand out a held port; be sure anyway.
      ::close(fd);
      return absl::InternalError("the kernel handed out a port already held");
    }
    auto* l = new Listener;
    l->kind = Kind::kListener;
    l->fd = fd;
    l->port = port;
    l->target = target_port;
    listeners_[port] = l;
    if (!accept_paused_) Register(l);
    return port;
  }

  absl::Status DoRetarget(int public_port, int target_port) {
    auto it = listeners_.find(public_port);
    if (it == listeners_.end()) {
      return absl::NotFoundError(absl::StrCat("port ", public_port, " is not proxied"));
    }
    it->second->target = target_port;
    return absl::OkStatus();
  }

  absl::Status DoClose(int public_port) {
    auto it = listeners_.find(public_port);
    if (it == listeners_.end()) {
      return absl::NotFoundError(absl::StrCat("port ", public_port, " is not proxied"));
    }
    ::close(it->second->fd);
    graveyard_listeners_.push_back(it->second);
    listeners_.erase(it);
    std::vector<Connection*> doomed;
    for (Connection* c : connections_) {
      if (c->listener_port == public_port) doomed.push_back(c);
    }
    for (Connection* c : doomed) Kill(c);
    return absl::OkStatus();
  }

  int connections() const { return count_.load(); }

 private:
  void Wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    (void)n;  // A full eventfd counter already means "wake up".
  }

  void Run() {
    epoll_event events[kMaxEvents];
    for (;;) {
      int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, -1);
      if (n < 0 && errno != EINTR) break;  // Cannot happen with a valid epoll fd.
      bool woken = false;
      for (int i = 0; i < n; ++i) {
        auto* h = static_cast<Handle*>(events[i].data.ptr);
        switch (h->kind) {
          case Kind::kWake:
            woken = true;
            break;
          case Kind::kListener:
            Accept(static_cast<Listener*>(h));
            break;
          case Kind::kEndpoint: {
            auto* e = static_cast<Endpoint*>(h);
            if (!e->conn->dead) Pump(e->conn, e->side, events[i].events);
            break;
          }
        }
      }
      // Freed only now: later events of the same batch may still point at them.
      for (Connection* c : graveyard_) delete c;
      graveyard_.clear();
      if (woken) {
        uint64_t value = 0;
        ssize_t r = ::read(wake_fd_, &value, sizeof(value));
        (void)r;  // Nonblocking; nothing to read only means another wake-up merged into this.
        std::vector<std::function<void()>> calls;
        bool stop = false;
        {
          absl::MutexLock lock(&mu_);
          calls.swap(calls_);
          stop = stop_;
        }
        for (auto& call : calls) call();
        for (Connection* c : graveyard_) delete c;
        graveyard_.clear();
        if (stop) break;
      }
      for (Listener* l : graveyard_listeners_) delete l;
      graveyard_listeners_.clear();
    }
    for (Listener* l : graveyard_listeners_) delete l;
    graveyard_listeners_.clear();
  }

  void Register(Listener* l) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = l;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, l->fd, &ev);
  }

  // Out of descriptors: stop accepting (a readable listener would wake the loop forever) until
  // a connection closes.
  void PauseAccepting() {
    if (accept_paused_) return;
    accept_paused_ = true;
    for (auto& [port, l] : listeners_) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, l->fd, nullptr);
  }

  void ResumeAccepting() {
    if (!accept_paused_) return;
    accept_paused_ = false;
    for (auto& [port, l] : listeners_) Register(l);
  }

  void Accept(Listener* l) {
    for (int k = 0; k < kMaxAcceptsPerWake; ++k) {
      int fd = ::accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          PauseAccepting();
          return;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN: the backlog is empty.
      }
      if (l->target == 0 || count_.load() >= options_.max_connections) {
        ::close(fd);  // Over the limit, or nothing to forward to yet.
        continue;
      }
      int up = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (up < 0) {
        ::close(fd);
        PauseAccepting();
        return;
      }
      sockaddr_in addr = Loopback(l->target);
      bool connected = ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
      if (!connected && errno != EINPROGRESS) {
        ::close(fd);
        ::close(up);
        continue;
      }
      auto* c = new Connection;
      c->fds[0] = fd;
      c->fds[1] = up;
      c->connecting = !connected;
      c->listener_port = l->port;
      for (int side = 0; side < 2; ++side) {
        c->ends[side].kind = Kind::kEndpoint;
        c->ends[side].conn = c;
        c->ends[side].side = side;
        c->pipes[side].Allocate(options_.buffer_bytes);
      }
      connections_.insert(c);
      count_.fetch_add(1);
      UpdateInterest(c);
    }
  }

  void Kill(Connection* c) {
    if (c->dead) return;
    c->dead = true;
    ::close(c->fds[0]);  // Closing also removes them from the epoll set.
    ::close(c->fds[1]);
    connections_.erase(c);
    graveyard_.push_back(c);
    count_.fetch_sub(1);
    ResumeAccepting();
  }

  // Moves whatever can move on connection `c` after an event on its `side`.
  void Pump(Connection* c, int side, uint32_t events) {
    if (c->connecting) {
      if (side == 1 && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(c->fds[1], SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          Kill(c);  // The target refused: the client sees its connection closed.
          return;
        }
        c->connecting = false;
      }
    }
    for (int i = 0; i < 2; ++i) {
      BytePipe& p = c->pipes[i];
      const int dst = c->fds[1 - i];
      // Read while there is room (an upstream still connecting has nothing to read).
      if (!(i == 1 && c->connecting) && p.ReceiveFrom(c->fds[i]) == BytePipe::Io::kFailed) {
        Kill(c);
        return;
      }
      if (c->connecting) continue;
      if (p.SendTo(dst) == BytePipe::Io::kFailed) {
        Kill(c);
        return;
      }
      if (p.eof && p.used() == 0 && !p.shut) {
        ::shutdown(dst, SHUT_WR);  // The half-close, passed on.
        p.shut = true;
      }
    }
    if (c->pipes[0].shut && c->pipes[1].shut) {
      Kill(c);
      return;
    }
    UpdateInterest(c);
  }

  // Level-triggered interest (EpollInterest): readable while its pipe has room, writable while
  // the other pipe holds bytes for it.
  void UpdateInterest(Connection* c) {
    for (int side = 0; side < 2; ++side) {
      uint32_t want = 0;
      const BytePipe& in = c->pipes[side];
      if (!in.eof && !in.Full(in.capacity) && !(side == 1 && c->connecting)) want |= EPOLLIN;
      if ((side == 1 && c->connecting) || c->pipes[1 - side].used() > 0) want |= EPOLLOUT;
      c->ends[side].interest.Set(epoll_fd_, c->fds[side], want, &c->ends[side]);
    }
  }

  const PortProxyOptions options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  Handle wake_;
  std::thread thread_;
  std::atomic<int> count_{0};

  absl::Mutex mu_;
  std::vector<std::function<void()>> calls_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  // Touched by the loop thread only (and by the destructor once it has joined).
  std::map<int, Listener*> listeners_;
  std::set<Connection*> connections_;
  std::vector<Connection*> graveyard_;
  std::vector<Listener*> graveyard_listeners_;
  bool accept_paused_ = false;
};

PortProxy::PortProxy(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}
PortProxy::~PortProxy() = default;

absl::StatusOr<std::unique_ptr<PortProxy>> PortProxy::Create(PortProxyOptions options) {
  if (options.max_connections < 1 || options.max_connections > kMaxProxyConnections) {
    return absl::InvalidArgumentError("max_connections out of range");
  }
  if (options.buffer_bytes < 1 || options.buffer_bytes > kMaxBufferBytes) {
    return absl::InvalidArgumentError("buffer_bytes out of range");
  }
  // Two descriptors per connection: raise the soft limit towards what the limit needs (never
  // past the hard limit; what remains short is met by pausing accepts on EMFILE).
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    rlim_t want = 2 * static_cast<rlim_t>(options.max_connections) + kSpareDescriptors + 1024;
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < want) {
      limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? want : std::min(want, limit.rlim_max);
      ::setrlimit(RLIMIT_NOFILE, &limit);  // Best effort, see above.
    }
  }
  auto loop = std::make_unique<Loop>(options);
  absl::Status started = loop->Start();
  if (!started.ok()) return started;
  return std::unique_ptr<PortProxy>(new PortProxy(std::move(loop)));
}

absl::StatusOr<int> PortProxy::Listen(int public_port, int target_port) {
  if (public_port < 0 || public_port > 65535 || target_port < 0 || target_port > 65535) {
    return absl::InvalidArgumentError("port out of range");
  }
  absl::StatusOr<int> result = absl::InternalError("not run");
  loop_->Call([&] { result = loop_->DoListen(public_port, target_port); });
  return result;
}

absl::Status PortProxy::Retarget(int public_port, int target_port) {
  if (target_port < 0 || target_port > 65535) return absl::InvalidArgumentError("bad port");
  absl::Status result;
  loop_->Call([&] { result = loop_->DoRetarget(public_port, target_port); });
  return result;
}

absl::Status PortProxy::Close(int public_port) {
  absl::Status result;
  loop_->Call([&] { result = loop_->DoClose(public_port); });
  return result;
}

int PortProxy::connections() const { return loop_->connections(); }

}  // namespace kiln::worker
