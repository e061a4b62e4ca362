#include "common/relay.h"

#include <catch2/catch.hpp>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace kiln {
namespace {

struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0); }
  ~SocketPair() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
};

std::string Contents(const BytePipe& p) { return std::string(p.data.get() + p.begin, p.used()); }

TEST_CASE("BytePipe reads up to its limit then stops and compacts to make room") {
  SocketPair s;
  BytePipe p;
  p.Allocate(8);
  REQUIRE(::write(s.fds[1], "abcdefghijkl", 12) == 12);
  CHECK(p.ReceiveFrom(s.fds[0], 5) == BytePipe::Io::kBlocked);
  CHECK(Contents(p) == "abcde");
  CHECK(p.Full(5));
  CHECK(p.ReceiveFrom(s.fds[0]) == BytePipe::Io::kBlocked);  // full at the capacity
  CHECK(Contents(p) == "abcdefgh");
  p.begin = 6;                                               // "gh" left unsent
  CHECK(p.ReceiveFrom(s.fds[0]) == BytePipe::Io::kBlocked);  // nothing more to read
  CHECK(Contents(p) == "ghijkl");
  CHECK(p.begin == 0);
  ::close(s.fds[1]);
  s.fds[1] = -1;
  CHECK(p.ReceiveFrom(s.fds[0]) == BytePipe::Io::kDone);
  CHECK(p.eof);
}

TEST_CASE("BytePipe sends what it holds and reports a peer that is gone") {
  SocketPair s;
  BytePipe p;
  p.Allocate(16);
  std::memcpy(p.data.get(), "hello", 5);
  p.end = 5;
  CHECK(p.SendTo(s.fds[0]) == BytePipe::Io::kDone);
  CHECK(p.used() == 0);
  CHECK(p.end == 0);
  char got[8] = {};
  CHECK(::read(s.fds[1], got, sizeof(got)) == 5);
  CHECK(std::string(got, 5) == "hello");
  ::close(s.fds[1]);
  s.fds[1] = -1;
  p.end = 3;
  CHECK(p.SendTo(s.fds[0]) == BytePipe::Io::kFailed);
  CHECK(p.used() == 3);  // nothing consumed
}

TEST_CASE("EpollInterest registers a socket only while it waits for something") {
  int epoll_fd = -1, wake_fd = -1;
  int tag = 0;
  REQUIRE(OpenEventLoop(&epoll_fd, &wake_fd, &tag).ok());
  SocketPair s;
  EpollInterest interest;
  interest.Set(epoll_fd, s.fds[0], EPOLLOUT, &s);
  CHECK(interest.registered);
  epoll_event events[4];
  REQUIRE(::epoll_wait(epoll_fd, events, 4, 0) == 1);
  CHECK(events[0].data.ptr == &s);
  interest.Set(epoll_fd, s.fds[0], 0, &s);
  CHECK_FALSE(interest.registered);
  CHECK(::epoll_wait(epoll_fd, events, 4, 0) == 0);
  // The wake-up eventfd reports with its tag.
  uint64_t one = 1;
  REQUIRE(::write(wake_fd, &one, sizeof(one)) == sizeof(one));
  REQUIRE(::epoll_wait(epoll_fd, events, 4, 0) == 1);
  CHECK(events[0].data.ptr == &tag);
  ::close(epoll_fd);
  ::close(wake_fd);
}

}  // namespace
}  // namespace kiln
