// kiln-worker's HTTP endpoint as main() starts it: an HttpServer with POST /webhooks/github
// (GithubWebhookHandler, see github_webhook.h) and GET /healthz, on 127.0.0.1 behind the front
// (tls_front.h) that serves the public address `listen`, with TLS when given a certificate;
// the public port is accepted by a ConnectionListener (common/connection_listener.h): at most
// `max_connections` open, a self-probe that reports through `on_accepting`. Further routes (the
// web console) can be added on http(). Destruction stops accepting, then the front, then the
// server, before the handler goes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/connection_listener.h"
#include "worker/http/delivery_cache.h"
#include "worker/http/github_webhook.h"
#include "worker/http/http_server.h"
#include "worker/http/tls_front.h"
#include "worker/http/webhook.h"

namespace kiln::worker {

// GitHub caps a delivery's payload at 25 MB but trims push payloads long before; 5 MiB holds
// a push of the 2048 commits it lists at most, with room.
inline constexpr int64_t kDefaultWebhookBodyBytes = int64_t{5} << 20;

struct WebhookServerOptions {
  std::string listen = "127.0.0.1:0";
  int64_t max_body_bytes = kDefaultWebhookBodyBytes;
  int threads = 4;
  // GitHub waits 10 s for an answer; a client slower than that to send is dropped.
  int request_timeout_ms = 10'000;
  size_t delivery_cache_entries = kDefaultDeliveryCacheEntries;
  // TLS on the public port (PEM files; none: plain HTTP) and, with a client CA, mutual TLS.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // A connection must finish its TLS handshake and send its request's head within this.
  absl::Duration handshake_timeout = absl::Seconds(10);
  int max_connections = 1000;
  absl::Duration probe_interval = absl::Seconds(5);  // zero: no self-probe
  std::function<void(bool accepting)> on_accepting;
};

class WebhookServer {
 public:
  // `backend` must outlive the server. Errors are HttpServer::Start's.
  static absl::StatusOr<std::unique_ptr<WebhookServer>> Start(const WebhookServerOptions& options,
                                                              WebhookBackend* backend);

  // The public port (the front's).
  int port() const { return listener_->port(); }
  HttpServer* http() { return http_.get(); }
  const TlsFront& front() const { return *front_; }
  ConnectionListener& listener() { return *listener_; }

 private:
  explicit WebhookServer(WebhookBackend* backend, size_t delivery_cache_entries)
      : handler_(backend, delivery_cache_entries) {}

  // Declared first so it is destroyed last, after the server's threads are joined; and the
  // listener last, so nothing new arrives while the rest stops.
  GithubWebhookHandler handler_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<TlsFront> front_;
  std::unique_ptr<ConnectionListener> listener_;
};

}  // namespace kiln::worker
