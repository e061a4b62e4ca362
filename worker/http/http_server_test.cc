#include "worker/http/http_server.h"

#include <catch2/catch.hpp>
#include <stdexcept>

#include "absl/time/clock.h"
#include "tests/testutil/http.h"
#include "tests/testutil/stack.h"

namespace kiln::worker {
namespace {

using testutil::HttpCall;
using testutil::HttpCallOptions;

constexpr int64_t kLimit = 64 * 1024;

using testutil::UseStack;

std::unique_ptr<HttpServer> StartServer() {
  HttpServerOptions options;
  options.threads = 2;
  options.max_body_bytes = kLimit;
  auto server = HttpServer::Start(options);
  REQUIRE(server.ok());
  REQUIRE((*server)->port() > 0);
  // Echoes what it saw, so the test can check what reached the handler.
  (*server)->Handle("/echo", [](const HttpRequest& r) {
    HttpResponse response;
    response.content_type = "text/plain";
    const std::string* custom = r.Header("x-custom");
    response.body = r.method + " " + r.path + " " + r.query + " " +
                    (custom == nullptr ? "-" : *custom) + " " + std::to_string(r.body.size());
    response.headers.push_back({"X-Seen", "yes"});
    return response;
  });
  (*server)->Handle("/static/", [](const HttpRequest& r) {
    HttpResponse response;
    response.body = "static:" + r.path;
    return response;
  });
  (*server)->Handle("/static/deeper/", [](const HttpRequest& r) {
    HttpResponse response;
    response.body = "deeper:" + r.path;
    return response;
  });
  (*server)->Handle("/stream", [](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.headers.push_back({"Cache-Control", "no-cache"});
    response.stream = [](const HttpBodyWriter& write) {
      for (int i = 0; i < 3; ++i) {
        if (!write("data: " + std::to_string(i) + "\n\n")) return;
      }
    };
    return response;
  });
  // Uses 1 MB of stack: far past what civetweb gives its threads.
  (*server)->Handle("/deep", [](const HttpRequest&) {
    HttpResponse response;
    response.body = std::to_string(UseStack(1 << 20));
    return response;
  });
  (*server)->Handle("/throws", [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("handler bug");
  });
  return *std::move(server);
}

TEST_CASE("HttpServer routes requests to handlers and answers 404 elsewhere") {
  auto server = StartServer();
  HttpCallOptions options;
  options.headers = {{"X-Custom", "hello"}};
  options.body = "abc";
  auto echo = HttpCall(server->port(), "POST", "/echo?x=1", options);
  REQUIRE(echo.ok());
  CHECK(echo->status == 200);
  CHECK(echo->body == "POST /echo x=1 hello 3");
  CHECK(echo->Header("X-Seen") == "yes");
  CHECK(echo->Header("Content-Type") == "text/plain");

  auto deeper = HttpCall(server->port(), "GET", "/static/deeper/a.js");
  REQUIRE(deeper.ok());
  CHECK(deeper->body == "deeper:/static/deeper/a.js");
  auto shallow = HttpCall(server->port(), "GET", "/static/index.html");
  REQUIRE(shallow.ok());
  CHECK(shallow->body == "static:/static/index.html");

  auto missing = HttpCall(server->port(), "GET", "/echo/more");
  REQUIRE(missing.ok());
  CHECK(missing->status == 404);
  CHECK(missing->body == R"({"error":"no such path: /echo/more"})");

  // A handler runs on a large stack, not on civetweb's small one (a gRPC channel's setup
  // overflowed that and crashed kiln-worker).
  auto deep_stack = HttpCall(server->port(), "GET", "/deep");
  REQUIRE(deep_stack.ok());
  CHECK(deep_stack->status == 200);
  CHECK(deep_stack->body == "16");

  auto thrown = HttpCall(server->port(), "GET", "/throws");
  REQUIRE(thrown.ok());
  CHECK(thrown->status == 500);
}

TEST_CASE("HttpServer streams a body without a length and keeps the handler's Cache-Control") {
  auto server = StartServer();
  auto reply = HttpCall(server->port(), "GET", "/stream");
  REQUIRE(reply.ok());
  CHECK(reply->status == 200);
  CHECK(reply->Header("Content-Type") == "text/event-stream");
  CHECK(reply->Header("Content-Length").empty());
  CHECK(reply->Header("Cache-Control") == "no-cache");
  CHECK(reply->body == "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  // Without one of its own, a response is not to be cached.
  auto echo = HttpCall(server->port(), "GET", "/echo");
  REQUIRE(echo.ok());
  CHECK(echo->Header("Cache-Control") == "no-store");
}

TEST_CASE("HttpServer refuses a body over the limit, declared or chunked") {
  auto server = StartServer();
  HttpCallOptions at_limit;
  at_limit.body = std::string(kLimit, 'x');
  auto ok = HttpCall(server->port(), "POST", "/echo", at_limit);
  REQUIRE(ok.ok());
  CHECK(ok->status == 200);
  CHECK(ok->body == "POST /echo  - " + std::to_string(kLimit));

  // Declared too long: answered from the header, no body ever sent.
  HttpCallOptions declared;
  declared.declared_length = kLimit + 1;
  absl::Time t0 = absl::Now();
  auto refused = HttpCall(server->port(), "POST", "/echo", declared);
  // Not held until the request timeout waiting for a body it will never read.
  CHECK(absl::Now() - t0 < absl::Seconds(5));
  REQUIRE(refused.ok());
  CHECK(refused->status == 413);

  HttpCallOptions chunked_ok;
  chunked_ok.chunked = true;
  chunked_ok.body = std::string(kLimit, 'y');
  auto chunked = HttpCall(server->port(), "POST", "/echo", chunked_ok);
  REQUIRE(chunked.ok());
  CHECK(chunked->status == 200);
  CHECK(chunked->body == "POST /echo  - " + std::to_string(kLimit));

  HttpCallOptions chunked_over = chunked_ok;
  chunked_over.body += "z";
  auto over = HttpCall(server->port(), "POST", "/echo", chunked_over);
  REQUIRE(over.ok());
  CHECK(over->status == 413);
}

TEST_CASE("HttpServer checks its options and stops promptly") {
  HttpServerOptions bad;
  bad.threads = 0;
  CHECK(HttpServer::Start(bad).status().code() == absl::StatusCode::kInvalidArgument);
  bad = {};
  bad.max_body_bytes = kMaxHttpBodyBytes + 1;
  CHECK(HttpServer::Start(bad).status().code() == absl::StatusCode::kInvalidArgument);

  auto first = HttpServer::Start({});
  REQUIRE(first.ok());
  HttpServerOptions same;
  same.listen = "127.0.0.1:" + std::to_string((*first)->port());
  CHECK(HttpServer::Start(same).status().code() == absl::StatusCode::kUnavailable);

  absl::Time before = absl::Now();
  first->reset();
  // civetweb's master thread polls for 2 s; stopping wakes it instead of waiting it out.
  CHECK(absl::Now() - before < absl::Seconds(1));
}

}  // namespace
}  // namespace kiln::worker
