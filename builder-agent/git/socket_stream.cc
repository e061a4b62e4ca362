#include "builder-agent/git/socket_stream.h"

#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::builder {
namespace {

// How often a wait looks at cancellation and deadlines.
constexpr int kPollSliceMs = 50;

thread_local const StreamLimits* current_limits = nullptr;

struct StreamState {
  std::string host;
  std::string port;
  int fd = -1;
  StreamLimits limits;
};

// libgit2 casts between git_stream* and this: `parent` must stay the first member.
struct InterruptibleStream {
  git_stream parent;
  StreamState* state;
};

StreamState* State(git_stream* stream) {
  return reinterpret_cast<InterruptibleStream*>(stream)->state;
}

// Waits until `fd` is ready for `events`. 0 when ready; -1 with libgit2's error set when
// cancelled, timed out or failed.
int WaitReady(StreamState* state, short events, absl::Duration timeout, const char* what) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (state->limits.cancelled && state->limits.cancelled()) {
      git_error_set_str(GIT_ERROR_NET, "cancelled");
      return -1;
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      git_error_set_str(GIT_ERROR_NET, absl::StrCat(what, " ", state->host, " timed out after ",
                                                    absl::FormatDuration(timeout))
                                           .c_str());
      return -1;
    }
    int slice =
        static_cast<int>(std::min<int64_t>(kPollSliceMs, absl::ToInt64Milliseconds(left) + 1));
    pollfd pfd{state->fd, events, 0};
    int rc = ::poll(&pfd, 1, slice);
    if (rc > 0) return 0;  // ready, or an error the next call will report
    if (rc < 0 && errno != EINTR) {
      git_error_set_str(GIT_ERROR_OS, absl::StrCat("poll: ", std::strerror(errno)).c_str());
      return -1;
    }
  }
}

int StreamConnect(git_stream* stream) {
  StreamState* state = State(stream);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* info = nullptr;
  if (int rc = ::getaddrinfo(state->host.c_str(), state->port.c_str(), &hints, &info); rc != 0) {
    git_error_set_str(GIT_ERROR_NET, absl::StrCat("failed to resolve address for ", state->host,
                                                  ": ", ::gai_strerror(rc))
                                         .c_str());
    return -1;
  }
  std::string last_error = "no address";
  for (addrinfo* p = info; p != nullptr; p = p->ai_next) {
    int fd = ::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
    if (fd < 0) continue;
    state->fd = fd;
    int rc = ::connect(fd, p->ai_addr, p->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (WaitReady(state, POLLOUT, state->limits.connect_timeout, "connecting to") != 0) {
        ::close(fd);
        state->fd = -1;
        ::freeaddrinfo(info);
        return -1;  // cancelled or timed out: do not try further addresses
      }
      int error = 0;
      socklen_t length = sizeof(error);
      rc =
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 ? (error == 0 ? 0 : -1) : -1;
      if (rc != 0) errno = error;
    }
    if (rc == 0) {
      ::freeaddrinfo(info);
      return 0;
    }
    last_error = std::strerror(errno);
    ::close(fd);
    state->fd = -1;
  }
  ::freeaddrinfo(info);
  git_error_set_str(GIT_ERROR_NET,
                    absl::StrCat("failed to connect to ", state->host, ": ", last_error).c_str());
  return -1;
}

ssize_t StreamRead(git_stream* stream, void* data, size_t length) {
  StreamState* state = State(stream);
  for (;;) {
    ssize_t n = ::recv(state->fd, data, length, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      git_error_set_str(
          GIT_ERROR_NET,
          absl::StrCat("error receiving data from socket: ", std::strerror(errno)).c_str());
      return -1;
    }
    if (WaitReady(state, POLLIN, state->limits.idle_timeout, "waiting for data from") != 0) {
      return -1;
    }
  }
}

ssize_t StreamWrite(git_stream* stream, const char* data, size_t length, int) {
  StreamState* state = State(stream);
  for (;;) {
    ssize_t n = ::send(state->fd, data, length, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      git_error_set_str(
          GIT_ERROR_NET,
          absl::StrCat("error sending data to socket: ", std::strerror(errno)).c_str());
      return -1;
    }
    if (WaitReady(state, POLLOUT, state->limits.idle_timeout, "sending to") != 0) return -1;
  }
}

int StreamClose(git_stream* stream) {
  StreamState* state = State(stream);
  if (state->fd >= 0) ::close(state->fd);
  state->fd = -1;
  return 0;
}

void StreamFree(git_stream* stream) {
  auto* wrapper = reinterpret_cast<InterruptibleStream*>(stream);
  StreamClose(stream);
  delete wrapper->state;
  delete wrapper;
}

int StreamInit(git_stream** out, const char* host, const char* port) {
  auto* wrapper = new InterruptibleStream{};
  wrapper->parent.version = GIT_STREAM_VERSION;
  wrapper->parent.connect = StreamConnect;
  wrapper->parent.read = StreamRead;
  wrapper->parent.write = StreamWrite;
  wrapper->parent.close = StreamClose;
  wrapper->parent.free = StreamFree;
  wrapper->state =
      new StreamState{host, port, -1, current_limits ? *current_limits : StreamLimits{}};
  *out = &wrapper->parent;
  return 0;
}

}  // namespace

void RegisterInterruptibleSocketStream() {
  git_stream_registration registration{};
  registration.version = GIT_STREAM_VERSION;
  registration.init = StreamInit;
  registration.wrap = nullptr;
  // Intentionally ignored: if registration fails, libgit2's own (blocking) stream remains.
  (void)git_stream_register(GIT_STREAM_STANDARD, &registration);
}

ScopedStreamLimits::ScopedStreamLimits(const StreamLimits* limits) : previous_(current_limits) {
  current_limits = limits;
}

ScopedStreamLimits::~ScopedStreamLimits() { current_limits = previous_; }

}  // namespace kiln::builder
