// kiln-worker's HTTP endpoint as main() starts it: an HttpServer with POST /webhooks/github
// (GithubWebhookHandler, see github_webhook.h) and GET /healthz. Further routes (the web
// console) can be added on http(). Destruction stops the server before the handler goes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/http/delivery_cache.h"
#include "worker/http/github_webhook.h"
#include "worker/http/http_server.h"
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
};

class WebhookServer {
 public:
  // `backend` must outlive the server. Errors are HttpServer::Start's.
  static absl::StatusOr<std::unique_ptr<WebhookServer>> Start(const WebhookServerOptions& options,
                                                              WebhookBackend* backend);

  int port() const { return http_->port(); }
  HttpServer* http() { return http_.get(); }

 private:
  explicit WebhookServer(WebhookBackend* backend, size_t delivery_cache_entries)
      : handler_(backend, delivery_cache_entries) {}

  // Declared first so it is destroyed last, after the server's threads are joined.
  GithubWebhookHandler handler_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace kiln::worker
