// The worker's TCP proxy for deploy slots: it holds each slot's public port on 127.0.0.1 and
// forwards every connection to the port of the container serving the slot. Because the worker,
// not a container, owns the public port, switching a slot to a new container is one Retarget:
// no connection attempt is refused during a deploy, and a container that never became healthy
// never receives traffic.
//
// One thread runs an epoll loop for all listeners and connections (no thread per connection).
// Invariants and limits:
//  - at most `max_connections` proxied connections in total; one more is accepted and closed at
//    once (the client sees EOF), so a flood cannot exhaust the worker's descriptors;
//  - each direction of a connection has one fixed buffer of `buffer_bytes`: while it is full
//    the proxy stops reading that side (backpressure reaches the sender through TCP);
//  - a half-close is forwarded: EOF from one side becomes shutdown(SHUT_WR) towards the other
//    once the buffer is drained; the connection ends when both directions have ended or on an
//    error (then both sockets close);
//  - Retarget changes where NEW connections go; established ones finish on their old target.
//  - a listener with target 0 holds its port but closes every connection it accepts (a slot
//    whose first container is still starting).
// Listen, Retarget and Close are thread-safe and take effect before they return.
#pragma once

#include <cstddef>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::worker {

inline constexpr int kMaxProxyConnections = 1024;
inline constexpr int kMaxProxyListeners = 256;
inline constexpr size_t kProxyBufferBytes = 16 * 1024;

struct PortProxyOptions {
  int max_connections = kMaxProxyConnections;  // 1 .. kMaxProxyConnections
  size_t buffer_bytes = kProxyBufferBytes;     // 1 .. 1 MiB, per direction
};

class PortProxy {
 public:
  // Starts the loop thread. InvalidArgument for limits out of range; Internal when epoll or
  // eventfd cannot be created.
  static absl::StatusOr<std::unique_ptr<PortProxy>> Create(PortProxyOptions options = {});
  // Closes every listener and connection, then joins the loop thread.
  ~PortProxy();
  PortProxy(const PortProxy&) = delete;
  PortProxy& operator=(const PortProxy&) = delete;

  // Listens on 127.0.0.1:`public_port` (0: a free port) and forwards to 127.0.0.1:`target_port`
  // (0: hold the port, close what arrives). Returns the port. AlreadyExists when this proxy
  // already holds the port, Unavailable when the port cannot be bound, ResourceExhausted past
  // kMaxProxyListeners.
  absl::StatusOr<int> Listen(int public_port, int target_port);
  // NotFound when the port is not held by this proxy.
  absl::Status Retarget(int public_port, int target_port);
  // Stops listening and closes the connections accepted on this port. NotFound when not held.
  absl::Status Close(int public_port);

  // Proxied connections open now (for tests and metrics).
  int connections() const;

 private:
  class Loop;
  explicit PortProxy(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace kiln::worker
