#include "worker/http/webhook_server.h"

#include "common/config.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::worker {

absl::StatusOr<std::unique_ptr<WebhookServer>> WebhookServer::Start(
    const WebhookServerOptions& options, WebhookBackend* backend) {
  ASSIGN_OR_RETURN(HostPort listen, ParseHostPort(options.listen, "--http"));
  HttpServerOptions http_options;
  http_options.listen = "127.0.0.1:0";  // Only the front connects here.
  http_options.trust_forwarded_for = true;
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
  ASSIGN_OR_RETURN(server->front_,
                   TlsFront::Create({.backend_port = server->http_->port(),
                                     .cert_file = options.tls_cert_file,
                                     .key_file = options.tls_key_file,
                                     .client_ca_file = options.tls_client_ca_file,
                                     .handshake_timeout = options.handshake_timeout}));
  ASSIGN_OR_RETURN(server->listener_,
                   ConnectionListener::Bind({.name = "http",
                                             .flag = "--http",
                                             .host = listen.host,
                                             .port = listen.port,
                                             .max_connections = options.max_connections,
                                             .probe_interval = options.probe_interval,
                                             .on_accepting = options.on_accepting}));
  TlsFront* front = server->front_.get();
  server->listener_->Start([front](int fd) { front->Adopt(fd); });
  LogInfo("webhook.listening", {{"listen", options.listen},
                                {"port", server->port()},
                                {"tls", server->front_->tls()},
                                {"client_ca", !options.tls_client_ca_file.empty()},
                                {"max_connections", options.max_connections}});
  return server;
}

}  // namespace kiln::worker
