// Minimal HTTP clients over loopback for tests (metrics endpoints, webhooks): a GET that wants
// a 200, and a raw request that returns whatever the server answered.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::testutil {

// Returns the response body of GET http://host:port/path; an error for a non-200 answer.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path);

struct HttpCallOptions {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Sends the body with Transfer-Encoding: chunked (chunks of chunk_bytes) instead of
  // Content-Length.
  bool chunked = false;
  size_t chunk_bytes = 16 * 1024;
  // Sends this Content-Length but no body at all: shows a server that refuses by the header.
  long long declared_length = -1;
};

struct HttpReply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The first header named `name` (case-insensitive), or "".
  std::string Header(const std::string& name) const;
};

// The head of the request HttpCall sends (Connection: close, the body's length or chunking
// declared), without the body.
std::string FormatHttpRequest(int port, const std::string& method, const std::string& path,
                              const HttpCallOptions& options = {});
// An answer as the server sent it, parsed; DataLoss when it has no status line and head.
absl::StatusOr<HttpReply> ParseHttpReply(const std::string& response);

// Sends one HTTP/1.1 request (Connection: close) to 127.0.0.1:port and reads the whole answer.
absl::StatusOr<HttpReply> HttpCall(int port, const std::string& method, const std::string& path,
                                   const HttpCallOptions& options = {});

}  // namespace kiln::testutil
