#include "worker/http/http_server.h"

#include <civetweb.h>

#include <algorithm>
#include <exception>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/civetweb_stop.h"
#include "common/json_scalar.h"
#include "common/large_stack.h"
#include "common/logging.h"

namespace kiln::worker {
namespace {

// Bytes read from the socket per mg_read call.
constexpr size_t kReadChunkBytes = 64 * 1024;
// How many listening sockets port() looks at (we open one).
constexpr int kMaxListeningPorts = 4;

// civetweb's own messages (bad requests, socket errors) go to our log, not stderr.
int LogCivetwebMessage(const mg_connection* conn, const char* message) {
  LogWarn("http.civetweb", {{"message", message == nullptr ? "" : message}});
  return 1;
}

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

void Send(mg_connection* conn, const HttpResponse& response) {
  const char* reason = mg_get_response_code_text(conn, response.status);
  std::string head =
      absl::StrCat("HTTP/1.1 ", response.status, " ", reason == nullptr ? "" : reason, "\r\n");
  absl::StrAppend(&head, "Content-Type: ", response.content_type, "\r\n");
  if (!response.stream) absl::StrAppend(&head, "Content-Length: ", response.body.size(), "\r\n");
  bool cache_control = false;
  for (const HttpHeader& h : response.headers) {
    cache_control = cache_control || absl::EqualsIgnoreCase(h.name, "Cache-Control");
  }
  if (!cache_control) head += "Cache-Control: no-store\r\n";
  head += "Connection: close\r\n";
  for (const HttpHeader& h : response.headers) {
    // A header that would split the response is a bug in the handler: drop it, never send it.
    if (HasLineBreak(h.name) || HasLineBreak(h.value)) continue;
    absl::StrAppend(&head, h.name, ": ", h.value, "\r\n");
  }
  head += "\r\n";
  // A failed write means the client went away; there is no one left to tell.
  if (response.stream) {
    if (mg_write(conn, head.data(), head.size()) <= 0) return;
    response.stream([conn](std::string_view part) {
      return part.empty() || mg_write(conn, part.data(), part.size()) > 0;
    });
    return;
  }
  (void)mg_write(conn, head.data(), head.size());
  if (!response.body.empty()) (void)mg_write(conn, response.body.data(), response.body.size());
}

}  // namespace

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const HttpHeader& h : headers) {
    if (absl::EqualsIgnoreCase(h.name, absl::string_view(name.data(), name.size()))) {
      return &h.value;
    }
  }
  return nullptr;
}

HttpResponse JsonError(int status, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.body = absl::StrCat("{\"error\":", json::EncodeString(message), "}");
  return response;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options) {
  if (options.listen.empty()) return absl::InvalidArgumentError("http: empty listen address");
  if (options.threads < 1 || options.threads > kMaxHttpThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("http: threads must be in [1, ", kMaxHttpThreads, "]"));
  }
  if (options.max_body_bytes < 0 || options.max_body_bytes > kMaxHttpBodyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("http: max_body_bytes must be in [0, ", kMaxHttpBodyBytes, "]"));
  }
  if (options.request_timeout_ms < 1 || options.request_timeout_ms > kMaxHttpRequestTimeoutMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("http: request_timeout_ms must be in [1, ", kMaxHttpRequestTimeoutMs, "]"));
  }
  auto server = std::unique_ptr<HttpServer>(new HttpServer(options));

  const std::string threads = std::to_string(options.threads);
  const std::string timeout = std::to_string(options.request_timeout_ms);
  // No document_root: civetweb serves no files of its own, every path comes to Dispatch.
  const char* config[] = {"listening_ports",
                          options.listen.c_str(),
                          "num_threads",
                          threads.c_str(),
                          "request_timeout_ms",
                          timeout.c_str(),
                          "enable_keep_alive",
                          "no",
                          nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = &LogCivetwebMessage;
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error{&error_code, error_text, sizeof(error_text)};
  mg_init_data init{&callbacks, server.get(), config};
  server->context_ = mg_start2(&init, &error);
  if (server->context_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("http: cannot listen on ", options.listen, ": ", error_text));
  }
  mg_server_port ports[kMaxListeningPorts] = {};
  int n = mg_get_server_ports(server->context_, kMaxListeningPorts, ports);
  if (n < 1) return absl::InternalError("http: civetweb reports no listening port");
  server->port_ = ports[0].port;
  mg_set_request_handler(server->context_, "/", &HttpServer::Dispatch, server.get());
  return server;
}

HttpServer::~HttpServer() {
  if (context_ == nullptr) return;
  StopWakingListener([this] { mg_stop(context_); }, options_.listen, port_);
}

void HttpServer::Handle(const std::string& path, HttpHandler handler) {
  auto shared = std::make_shared<const HttpHandler>(std::move(handler));
  absl::MutexLock lock(&mu_);
  routes_[path] = std::move(shared);
}

std::shared_ptr<const HttpHandler> HttpServer::Route(const std::string& path) const {
  absl::MutexLock lock(&mu_);
  if (auto it = routes_.find(path); it != routes_.end()) return it->second;
  // The longest registered prefix ending in "/" that `path` starts with.
  std::shared_ptr<const HttpHandler> best;
  size_t best_length = 0;
  for (const auto& [route, handler] : routes_) {
    if (route.empty() || route.back() != '/' || route.size() <= best_length) continue;
    if (path.starts_with(route)) {
      best = handler;
      best_length = route.size();
    }
  }
  return best;
}

int HttpServer::Dispatch(mg_connection* conn, void* self) {
  // civetweb's threads have small stacks (large_stack.h): handlers run on a large one. Nothing
  // may unwind through civetweb's C frames nor across the stack switch.
  int status = 500;
  RunOnLargeStack([&] {
    try {
      status = static_cast<HttpServer*>(self)->Serve(conn);
      return;
    } catch (const std::exception& e) {
      LogError("http.handler_exception", {{"what", e.what()}});
    } catch (...) {
      LogError("http.handler_exception", {{"what", "unknown"}});
    }
    Send(conn, JsonError(500, "internal error"));
    status = 500;
  });
  return status;
}

int HttpServer::Serve(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  HttpRequest request;
  request.method = info->request_method == nullptr ? "" : info->request_method;
  const char* path = info->local_uri != nullptr ? info->local_uri : info->request_uri;
  request.path = path == nullptr ? "" : path;
  if (info->query_string != nullptr) request.query = info->query_string;
  request.remote_addr = info->remote_addr;
  for (int i = 0; i < info->num_headers; ++i) {
    request.headers.push_back(
        {info->http_headers[i].name == nullptr ? "" : info->http_headers[i].name,
         info->http_headers[i].value == nullptr ? "" : info->http_headers[i].value});
  }
  if (options_.trust_forwarded_for) {
    if (const std::string* forwarded = request.Header("X-Forwarded-For")) {
      request.remote_addr = *forwarded;
    }
  }

  // Refuse a declared oversize body before reading a byte of it.
  const int64_t limit = options_.max_body_bytes;
  if (info->content_length > limit) {
    // Marked to close, civetweb does not drain the unread body (which a client may never send).
    mg_disable_connection_keep_alive(conn);
    HttpResponse response = JsonError(413, absl::StrCat("body over ", limit, " bytes"));
    Send(conn, response);
    return response.status;
  }
  // Chunked (or undeclared) bodies are counted as they arrive: read at most limit + 1 bytes.
  if (info->content_length > 0) request.body.reserve(static_cast<size_t>(info->content_length));
  char buffer[kReadChunkBytes];
  for (;;) {
    size_t want = static_cast<size_t>(
        std::min<int64_t>(kReadChunkBytes, limit + 1 - static_cast<int64_t>(request.body.size())));
    int n = mg_read(conn, buffer, want);
    if (n == 0) break;
    if (n < 0) {
      mg_disable_connection_keep_alive(conn);
      HttpResponse response = JsonError(400, "could not read the request body");
      Send(conn, response);
      return response.status;
    }
    request.body.append(buffer, static_cast<size_t>(n));
    if (static_cast<int64_t>(request.body.size()) > limit) {
      mg_disable_connection_keep_alive(conn);
      HttpResponse response = JsonError(413, absl::StrCat("body over ", limit, " bytes"));
      Send(conn, response);
      return response.status;
    }
  }

  std::shared_ptr<const HttpHandler> handler = Route(request.path);
  HttpResponse response = handler == nullptr
                              ? JsonError(404, absl::StrCat("no such path: ", request.path))
                              : (*handler)(request);
  if (response.status < 100 || response.status > 599) {
    LogError("http.bad_status", {{"path", request.path}, {"status", response.status}});
    response = JsonError(500, "internal error");
  }
  Send(conn, response);
  return response.status;
}

}  // namespace kiln::worker
