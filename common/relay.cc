#include "common/relay.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kiln {
namespace {

bool WouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

void BytePipe::Allocate(size_t bytes) {
  data = std::make_unique<char[]>(bytes);
  capacity = bytes;
  Clear();
}

void BytePipe::Compact(size_t limit) {
  if (end < limit || begin == 0) return;
  std::memmove(data.get(), data.get() + begin, used());
  end -= begin;
  begin = 0;
}

BytePipe::Io BytePipe::ReceiveFrom(int fd, size_t limit) {
  limit = std::min(limit, capacity);
  while (!eof) {
    Compact(limit);
    if (end >= limit) return Io::kBlocked;
    const ssize_t n = ::recv(fd, data.get() + end, limit - end, 0);
    if (n > 0) {
      end += static_cast<size_t>(n);
    } else if (n == 0) {
      eof = true;
    } else if (errno == EINTR) {
      continue;
    } else if (WouldBlock(errno)) {
      return Io::kBlocked;
    } else {
      return Io::kFailed;
    }
  }
  return Io::kDone;
}

BytePipe::Io BytePipe::SendTo(int fd) {
  while (used() > 0) {
    const ssize_t n = ::send(fd, data.get() + begin, used(), MSG_NOSIGNAL);
    if (n > 0) {
      begin += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && WouldBlock(errno)) {
      return Io::kBlocked;
    } else {
      if (n == 0) errno = EPIPE;
      return Io::kFailed;
    }
  }
  Clear();
  return Io::kDone;
}

void EpollInterest::Set(int epoll_fd, int fd, uint32_t want, void* tag) {
  if (want == events && (want != 0) == registered) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.ptr = tag;
  if (want == 0) {
    if (registered) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    registered = false;
  } else if (registered) {
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
  } else {
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    registered = true;
  }
  events = want;
}

absl::Status OpenEventLoop(int* epoll_fd, int* wake_fd, void* wake_tag) {
  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  const int wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = wake_tag;
  if (epoll < 0 || wake < 0 || ::epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &ev) != 0) {
    const int error = errno;
    if (epoll >= 0) ::close(epoll);
    if (wake >= 0) ::close(wake);
    return absl::InternalError(absl::StrCat("epoll/eventfd: ", std::strerror(error)));
  }
  *epoll_fd = epoll;
  *wake_fd = wake;
  return absl::OkStatus();
}

}  // namespace kiln
