#include "tests/testutil/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kiln::testutil {
namespace {

// Everything the server sends until it closes (or the receive timeout); closes `fd`.
std::string ReceiveAllAndClose(int fd) {
  std::string response;
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return response;
}

}  // namespace

absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", host));
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", host, ":", port, ": ", strerror(errno)));
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host, "\r\n\r\n");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response = ReceiveAllAndClose(fd);
  size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::DataLossError("no HTTP header in response");
  if (response.compare(0, 12, "HTTP/1.1 200") != 0 &&
      response.compare(0, 12, "HTTP/1.0 200") != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("HTTP answer: ", response.substr(0, response.find("\r\n"))));
  }
  return response.substr(header_end + 4);
}

std::string HttpReply::Header(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

namespace {

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string FormatHttpRequest(int port, const std::string& method, const std::string& path,
                              const HttpCallOptions& options) {
  std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1:", port,
                                     "\r\nConnection: close\r\n");
  for (const auto& [name, value] : options.headers)
    absl::StrAppend(&request, name, ": ", value, "\r\n");
  if (options.declared_length >= 0) {
    absl::StrAppend(&request, "Content-Length: ", options.declared_length, "\r\n");
  } else if (options.chunked) {
    absl::StrAppend(&request, "Transfer-Encoding: chunked\r\n");
  } else if (!options.body.empty() || method == "POST" || method == "PUT") {
    absl::StrAppend(&request, "Content-Length: ", options.body.size(), "\r\n");
  }
  request += "\r\n";
  return request;
}

absl::StatusOr<HttpReply> ParseHttpReply(const std::string& response) {
  size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::DataLossError("no HTTP answer");
  std::vector<std::string> lines =
      absl::StrSplit(response.substr(0, header_end), "\r\n", absl::SkipEmpty());
  HttpReply reply;
  std::vector<std::string> status_line = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &reply.status)) {
    return absl::DataLossError(absl::StrCat("bad status line: ", lines[0]));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    reply.headers.emplace_back(lines[i].substr(0, colon),
                               std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  reply.body = response.substr(header_end + 4);
  return reply;
}

absl::StatusOr<HttpReply> HttpCall(int port, const std::string& method, const std::string& path,
                                   const HttpCallOptions& options) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect 127.0.0.1:", port, ": ", strerror(errno)));
  }
  const std::string head = FormatHttpRequest(port, method, path, options);
  // A server may answer and close before it reads a body it refuses; the answer still counts.
  bool sent = SendAll(fd, head);
  if (sent && options.declared_length < 0) {
    if (options.chunked) {
      std::string_view rest = options.body;
      while (sent && !rest.empty()) {
        std::string_view chunk = rest.substr(0, options.chunk_bytes);
        rest.remove_prefix(chunk.size());
        std::string frame = absl::StrCat(absl::Hex(chunk.size()), "\r\n",
                                         absl::string_view(chunk.data(), chunk.size()), "\r\n");
        sent = SendAll(fd, frame);
      }
      if (sent) sent = SendAll(fd, "0\r\n\r\n");
    } else {
      sent = SendAll(fd, options.body);
    }
  }
  std::string response = ReceiveAllAndClose(fd);
  if (response.find("\r\n\r\n") == std::string::npos) {
    return absl::DataLossError(absl::StrCat("no HTTP answer (request sent: ", sent, ")"));
  }
  return ParseHttpReply(response);
}

}  // namespace kiln::testutil
