#include "builder-agent/podman/registry_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace kiln::builder {
namespace {

struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

bool WaitFd(int fd, short events, absl::Time deadline) {
  int ms =
      static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, ms) == 1;
}

}  // namespace

absl::StatusOr<std::map<std::string, int64_t>> ManifestBlobSizes(const std::string& repository,
                                                                 const std::string& digest,
                                                                 absl::Duration timeout) {
  size_t slash = repository.find('/');
  if (slash == std::string::npos) return absl::InvalidArgumentError("no registry host");
  std::string host = repository.substr(0, slash);
  std::string path = repository.substr(slash + 1);
  size_t colon = host.rfind(':');
  int port = 80;
  std::string name = host;
  if (colon != std::string::npos) {
    name = host.substr(0, colon);
    if (!absl::SimpleAtoi(host.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError("bad registry port");
    }
  }
  if (name != "127.0.0.1" && name != "localhost") {
    return absl::UnimplementedError("blob sizes are read from loopback registries only");
  }
  const absl::Time deadline = absl::Now() + timeout;
  Socket sock;
  sock.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (sock.fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(sock.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    return absl::UnavailableError("cannot connect to the registry");
  }
  if (!WaitFd(sock.fd, POLLOUT, deadline))
    return absl::UnavailableError("registry connect timeout");
  std::string request = absl::StrCat(
      "GET /v2/", path, "/manifests/", digest, " HTTP/1.0\r\nHost: ", host,
      "\r\nAccept: application/vnd.oci.image.manifest.v1+json, "
      "application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    if (!WaitFd(sock.fd, POLLOUT, deadline)) return absl::UnavailableError("registry timeout");
    ssize_t n = ::send(sock.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return absl::UnavailableError("send failed");
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[16384];
  for (;;) {
    if (!WaitFd(sock.fd, POLLIN, deadline)) return absl::UnavailableError("registry timeout");
    ssize_t n = ::recv(sock.fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError("recv failed");
    }
    response.append(buf, static_cast<size_t>(n));
    if (response.size() > kMaxManifestBytes)
      return absl::ResourceExhaustedError("manifest too large");
  }
  size_t body_at = response.find("\r\n\r\n");
  if (body_at == std::string::npos || !absl::StartsWith(response, "HTTP/1.")) {
    return absl::InternalError("malformed registry response");
  }
  std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("registry answered ", status_line));
  }
  google::protobuf::Struct manifest;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(response.substr(body_at + 4), &manifest, options)
           .ok()) {
    return absl::InternalError("manifest is not JSON");
  }
  std::map<std::string, int64_t> sizes;
  auto add = [&](const google::protobuf::Value& v) {
    if (!v.has_struct_value()) return;
    const auto& fields = v.struct_value().fields();
    auto d = fields.find("digest");
    auto s = fields.find("size");
    if (d == fields.end() || s == fields.end()) return;
    sizes[d->second.string_value()] = static_cast<int64_t>(s->second.number_value());
  };
  const auto& fields = manifest.fields();
  if (auto c = fields.find("config"); c != fields.end()) add(c->second);
  if (auto l = fields.find("layers"); l != fields.end() && l->second.has_list_value()) {
    for (const auto& layer : l->second.list_value().values()) add(layer);
  }
  return sizes;
}

}  // namespace kiln::builder
