// kiln-worker's public HTTP port (--http) in front of the HttpServer: it takes each connection
// the port's ConnectionListener accepts (capped, self-probed: common/connection_listener.h),
// terminates TLS with OpenSSL when it has a certificate, waits for the request's head, and
// forwards the request in plaintext to the HttpServer on 127.0.0.1:`backend_port`, with
// X-Forwarded-For set to the peer's address (any the client sent is dropped). civetweb's own
// TLS cannot serve here: Debian 12's libcivetweb dlopens libssl and looks up
// SSL_get_peer_certificate, which OpenSSL 3 no longer exports, so it cannot start with TLS.
//
// One thread runs an epoll loop for all connections (no thread per connection). Invariants and
// limits:
//  - how many connections there are is the listener's cap; each holds, with TLS, one SSL
//    object and, once its handshake is done, two fixed buffers of `buffer_bytes` (one per
//    direction);
//  - the backend is connected only once the head (up to the blank line) has arrived whole, so a
//    slow or silent client never holds one of civetweb's threads. The TLS handshake and the head
//    must be done within `handshake_timeout` of the hand-off, else the connection is closed; a
//    head that does not fit in `buffer_bytes` (less room for the header we add), or that has a
//    bare CR or LF or a folded line (where another parser could see other headers than we do),
//    closes it too;
//  - after the head, bytes flow both ways; a half-close from the client is passed on. The
//    backend answers one request per connection and then closes: once its answer is delivered
//    (TLS close_notify, then FIN) what the client still sends is read and dropped until it
//    closes or `handshake_timeout` passes, so the answer is not lost to a reset;
//  - with a client CA, a client without a certificate it signed fails the handshake (TLS 1.3
//    clients learn it at their first read: the server checks after its own Finished).
// Nothing here blocks: OpenSSL works on the non-blocking sockets through SSL_ERROR_WANT_*.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::worker {

inline constexpr size_t kFrontBufferBytes = 16 * 1024;

struct TlsFrontOptions {
  int backend_port = 0;  // the HttpServer's, on 127.0.0.1
  // PEM files. No certificate: plain HTTP (still capped, timed and forwarded the same way).
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // clients must present a certificate it signed (mutual TLS)
  std::string flag_prefix = "--http-tls";  // names the flags in errors
  absl::Duration handshake_timeout = absl::Seconds(10);
  size_t buffer_bytes = kFrontBufferBytes;  // per direction; 4 KiB .. 1 MiB
};

class TlsFront {
 public:
  // Loads the certificate and key (InvalidArgument naming the flag when one is missing, cannot
  // be read or does not match) and starts the loop thread.
  static absl::StatusOr<std::unique_ptr<TlsFront>> Create(TlsFrontOptions options);
  // Closes every connection, then joins the loop thread.
  ~TlsFront();
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  // Takes an accepted, non-blocking connection (from any thread): ConnectionListener's hand-off.
  void Adopt(int fd);

  bool tls() const;
  // Connections open now.
  int connections() const;
  // Connections closed because the handshake or the head took too long.
  uint64_t timeouts() const;

 private:
  class Loop;
  explicit TlsFront(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace kiln::worker
