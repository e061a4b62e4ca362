// A small, bounded HTTP/1.1 server over civetweb for kiln-worker: GitHub webhooks now, the web
// console later. Handlers see a whole request (method, path, headers, raw body) and return a
// whole response; nothing streams yet.
//
// Bounds, all fixed at Start: `threads` civetweb worker threads serve requests (one request per
// thread at a time; further connections wait in civetweb's queue); a body is refused with 413
// before it is read when its Content-Length is over `max_body_bytes`, and while it is read when
// it is chunked; a socket read or write that stalls for `request_timeout_ms` ends the request.
// Connections are not kept alive: a refused body is never drained, so the connection closes.
//
// A response may stream its body instead (HttpResponse::stream, for server-sent events): the
// head goes out without a Content-Length, then the stream writes until it returns or a write
// fails (the client left), and the connection closes. A stream holds its civetweb thread for as
// long as it runs, so whoever serves one bounds how many run at once and for how long.
//
// Every response carries `Cache-Control: no-store` unless the handler sets its own.
//
// Routes: Handle(path, handler) serves exactly `path`, or every path under it when `path` ends
// in "/" (the longest such prefix wins). Other paths get 404. Handle may be called before or
// while serving; a route cannot be removed. Handlers run on civetweb's threads, concurrently,
// and must be thread-safe; an exception from one becomes a 500.
//
// Destruction stops listening, waits for the requests being served, and joins every thread
// (in milliseconds: it wakes civetweb's 2 s poll with a connection of its own).
// Several servers (and prometheus-cpp's Exposer, also civetweb) may live in one process.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct mg_context;
struct mg_connection;

namespace kiln::worker {

// Hard ceilings on the options, whatever the caller asks for.
inline constexpr int kMaxHttpThreads = 64;
inline constexpr int64_t kMaxHttpBodyBytes = int64_t{64} << 20;
inline constexpr int kMaxHttpRequestTimeoutMs = 600'000;

struct HttpServerOptions {
  // host:port; port 0 picks a free one (see port()). "[::1]:0" for IPv6.
  std::string listen = "127.0.0.1:0";
  int threads = 4;
  int request_timeout_ms = 10'000;
  int64_t max_body_bytes = int64_t{1} << 20;
  // Behind kiln-worker's front (tls_front.h), which sets X-Forwarded-For to the client's
  // address and drops any the client sent: remote_addr is taken from it. Only for a server on
  // loopback: anything that can reach the port directly could claim any address.
  bool trust_forwarded_for = false;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

struct HttpRequest {
  std::string method;  // As sent: "GET", "POST", ...
  std::string path;    // URL-decoded, without the query string.
  std::string query;   // After '?', not decoded; empty when none.
  std::vector<HttpHeader> headers;
  std::string body;         // Raw bytes, never more than max_body_bytes.
  std::string remote_addr;  // The peer; with trust_forwarded_for, the front's X-Forwarded-For.

  // The first header named `name` (case-insensitive), or nullptr.
  const std::string* Header(std::string_view name) const;
};

// Writes part of a streamed body and sends it at once; false when the client has gone.
using HttpBodyWriter = std::function<bool(std::string_view)>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<HttpHeader> headers;  // Extra headers (e.g. Allow, Cache-Control).
  // Set: `body` is ignored and this writes the body after the head (see the header comment).
  std::function<void(const HttpBodyWriter& write)> stream;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  // Listens and starts the threads. kInvalidArgument for options out of range, kUnavailable
  // when civetweb cannot listen (address in use, bad address).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port actually listened on.
  int port() const { return port_; }
  const HttpServerOptions& options() const { return options_; }

  // Serves `path` (or everything under it, when it ends in "/") with `handler`; replaces an
  // earlier handler for the same path.
  void Handle(const std::string& path, HttpHandler handler);

 private:
  explicit HttpServer(const HttpServerOptions& options) : options_(options) {}
  static int Dispatch(mg_connection* conn, void* self);
  int Serve(mg_connection* conn);
  // The handler for `path`, or null.
  std::shared_ptr<const HttpHandler> Route(const std::string& path) const;

  const HttpServerOptions options_;
  mg_context* context_ = nullptr;
  int port_ = 0;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const HttpHandler>> routes_ ABSL_GUARDED_BY(mu_);
};

// {"error": message}, with `status`.
HttpResponse JsonError(int status, std::string_view message);

}  // namespace kiln::worker
