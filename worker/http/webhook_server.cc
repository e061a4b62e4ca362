#include "worker/http/webhook_server.h"

#include "common/logging.h"

namespace kiln::worker {

absl::StatusOr<std::unique_ptr<WebhookServer>> WebhookServer::Start(
    const WebhookServerOptions& options, WebhookBackend* backend) {
  HttpServerOptions http_options;
  http_options.listen = options.listen;
  http_options.threads = options.threads;
  http_options.request_timeout_ms = options.request_timeout_ms;
  http_options.max_body_bytes = options.max_body_bytes;
  auto server =
      std::unique_ptr<WebhookServer>(new WebhookServer(backend, options.delivery_cache_entries));
  absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(http_options);
  if (!http.ok()) return http.status();
  server->http_ = *std::move(http);
  GithubWebhookHandler* handler = &server->handler_;
  server->http_->Handle(std::string(kGithubWebhookPath),
                        [handler](const HttpRequest& request) { return handler->Handle(request); });
  server->http_->Handle("/healthz", [](const HttpRequest& request) {
    HttpResponse response;
    response.body = "{\"status\":\"ok\"}";
    return response;
  });
  LogInfo("webhook.listening", {{"listen", options.listen}, {"port", server->port()}});
  return server;
}

}  // namespace kiln::worker
