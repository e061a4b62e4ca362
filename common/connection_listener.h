// A listening socket accepted by us and handed, one connection at a time, to whoever serves it:
// a gRPC server (ServerBuilder's external connection acceptor: the orchestrator's listener and
// kiln-worker's BuildService) or kiln-worker's HTTP front (worker/http/tls_front.h). gRPC
// 1.51's own accept loop stops for good at the first accept that fails for lack of file
// descriptors (EMFILE: gRPC issues #16058, #20418), so a flood of connections past the
// open-file limit left the listener deaf after the flood was gone; and it has no connection
// cap. This one:
// - keeps at most max_connections connections open: one more is accepted and closed at once
//   (the client sees the connection close and may retry), so a flood cannot use up the
//   descriptors RocksDB and the listener need;
// - survives EMFILE anyway (descriptors used up elsewhere): it frees a descriptor it keeps in
//   reserve, accepts and closes the pending connection, takes the reserve back, and goes on;
// - checks itself: a probe connects to the listening address every probe_interval; it passes
//   when the server's first bytes arrive (HTTP/2 settings) or, with nothing to read by the
//   timeout (a TLS server waits for the client), when the connection was accepted and not
//   closed. `on_accepting` hears whether that worked.
// Connections handed off are counted until their owner closes them (a sweep notices the
// descriptor gone or reused), so the owner need not report closes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include <grpcpp/server_builder.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln {

struct ConnectionListenerOptions {
  // Names the listener in logs ("grpc", "http") and its flag in errors ("--listen").
  std::string name = "grpc";
  std::string flag = "--listen";
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks one
  int max_connections = 1000;
  absl::Duration probe_interval = absl::Seconds(5);
  absl::Duration probe_timeout = absl::Seconds(2);
  // Told the probe's outcome each time it changes (and once at the first probe).
  std::function<void(bool accepting)> on_accepting;
};

class ConnectionListener {
 public:
  // Binds and listens (nothing is accepted until Start).
  static absl::StatusOr<std::unique_ptr<ConnectionListener>> Bind(
      ConnectionListenerOptions options);
  ~ConnectionListener();
  ConnectionListener(const ConnectionListener&) = delete;
  ConnectionListener& operator=(const ConnectionListener&) = delete;

  // Starts accepting; each accepted connection (non-blocking, close-on-exec) is given to
  // `hand_off`, which owns it from then on. Called on the accept thread.
  using HandOff = std::function<void(int fd)>;
  void Start(HandOff hand_off);
  // Starts accepting into `acceptor` (from ServerBuilder, after the server has started).
  void StartGrpc(std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor);
  // Stops accepting and probing, and closes the listening socket. Idempotent.
  void Stop();

  int port() const { return port_; }
  // Connections handed off and not yet closed (as of the last sweep).
  int open_connections();
  // Connections accepted and closed at once (over the cap, or out of descriptors).
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  ConnectionListener(ConnectionListenerOptions options, int listen_fd, int port);
  void AcceptLoop();
  void ProbeLoop();
  bool Probe();
  // Drops connections their owner has closed.
  void SweepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refuse(int fd, const char* why);

  const ConnectionListenerOptions options_;
  const int listen_fd_;
  const int port_;
  int wake_fd_ = -1;     // eventfd: wakes the accept loop to stop
  int reserve_fd_ = -1;  // /dev/null, closed to make room when accept meets EMFILE
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;
  HandOff hand_off_;
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> accepted_{0};                   // handed off
  absl::Time next_refusal_log_ = absl::InfinitePast();  // accept thread only

  absl::Mutex mu_;
  // Descriptor -> inode of each connection handed off: its owner closes it without telling us,
  // and the number may come back for another file.
  std::unordered_map<int, uint64_t> open_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread accept_thread_;
  std::thread probe_thread_;
};

}  // namespace kiln
