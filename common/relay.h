// The parts of a user-space TCP relay that kiln-worker's two proxies share (the HTTP/TLS front,
// worker/http/tls_front.cc, and the deploy port proxy, worker/deploy/port_proxy.cc): a
// fixed-size buffer per direction, the non-blocking reads and writes that move bytes through
// it, a socket's level-triggered epoll interest, and the epoll set with its wake-up eventfd.
// Single-threaded: each relay's loop thread owns its pipes and registrations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"

namespace kiln {

// One direction of a relayed connection: bytes read from one socket wait in [begin, end) until
// written to the other. A full pipe is not read into (backpressure).
struct BytePipe {
  std::unique_ptr<char[]> data;
  size_t capacity = 0;
  size_t begin = 0;
  size_t end = 0;
  bool eof = false;   // The source has ended (FIN, or a reset that delivered what it had).
  bool shut = false;  // The end passed on (shutdown(SHUT_WR) of the destination).

  // Buffers come lazily: a connection that never gets far costs nothing.
  void Allocate(size_t bytes);
  size_t used() const { return end - begin; }
  // Nothing may be read in below `limit` (at most the capacity) without sending first.
  bool Full(size_t limit) const { return begin == 0 && end >= limit; }
  void Clear() { begin = end = 0; }
  // When the tail is at `limit`, moves the unsent bytes to the front to make room.
  void Compact(size_t limit);

  enum class Io {
    kBlocked,  // would block (or, receiving, the pipe reached its limit): wait for readiness
    kDone,     // receiving: the source ended (eof set); sending: the pipe is empty
    kFailed,   // errno says why (a reset, a broken pipe); nothing consumed by the failing call
  };
  // Reads from `fd` until the pipe holds `limit` bytes (at most the capacity), the source ends
  // or the read would block.
  Io ReceiveFrom(int fd, size_t limit);
  Io ReceiveFrom(int fd) { return ReceiveFrom(fd, capacity); }
  // Writes to `fd` until the pipe is empty (then begin = end = 0) or the write would block.
  Io SendTo(int fd);
};

// The epoll interest of one socket, level-triggered. A socket with nothing to wait for leaves
// the set, so a hang-up reported on it cannot wake the loop over and over; its next read or
// write sees the error.
struct EpollInterest {
  uint32_t events = 0;
  bool registered = false;

  // Makes the set wait for `want` (EPOLLIN, EPOLLOUT or both; 0: nothing) on `fd`, reported
  // with `tag` as the event's data.ptr. Only calls epoll_ctl when something changes.
  void Set(int epoll_fd, int fd, uint32_t want, void* tag);
  // `fd` was closed (which removed it from the set).
  void Forget() { events = 0, registered = false; }
};

// A new epoll set and a non-blocking eventfd in it (EPOLLIN, data.ptr = wake_tag) that wakes
// the loop. Both close-on-exec; on failure neither is left open.
absl::Status OpenEventLoop(int* epoll_fd, int* wake_fd, void* wake_tag);

}  // namespace kiln
