// A smart-HTTP git server on 127.0.0.1 for tests: git-http-backend run as CGI behind a minimal
// HTTP/1.1 server that demands Basic auth ("x-access-token" and a token) on every request.
// Answers carry Content-Length (libgit2 1.5 cannot read bodies delimited by connection close,
// so busybox httpd's CGI answers do not work with it). One connection at a time.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "openssl/ssl.h"

namespace kiln::builder::testing {

struct Channel;  // a plain or TLS connection (smart_http_server.cc)

class SmartHttpServer {
 public:
  static constexpr char kHttpBackend[] = "/usr/lib/git-core/git-http-backend";

  // Serves the repositories under `project_root` (GIT_PROJECT_ROOT) to clients presenting
  // `token`. kFailedPrecondition when git-http-backend is not installed. With `redirect_base`
  // ("http://127.0.0.1:<port>"), every request is answered 301 to the same path there instead.
  static absl::StatusOr<std::unique_ptr<SmartHttpServer>> Start(std::string project_root,
                                                                std::string token,
                                                                std::string redirect_base = "");
  // The same over TLS (URLs become https://) with a PEM certificate and key.
  struct TlsFiles {
    std::string certificate;
    std::string key;
  };
  static absl::StatusOr<std::unique_ptr<SmartHttpServer>> Start(std::string project_root,
                                                                std::string token,
                                                                std::string redirect_base,
                                                                const TlsFiles& tls);
  ~SmartHttpServer();
  SmartHttpServer(const SmartHttpServer&) = delete;
  SmartHttpServer& operator=(const SmartHttpServer&) = delete;

  // http://127.0.0.1:<port>/<repo_path>
  std::string Url(const std::string& repo_path) const;
  int requests() const { return requests_.load(); }
  int unauthorized() const { return unauthorized_.load(); }
  // Requests that carried the right token.
  int authorized() const { return authorized_.load(); }

 private:
  SmartHttpServer(int listen_fd, int port, std::string project_root, std::string token,
                  std::string redirect_base, SSL_CTX* tls);
  void Serve();
  void Handle(Channel channel);

  int listen_fd_;
  SSL_CTX* tls_;  // null for plain HTTP
  int port_;
  std::string project_root_;
  std::string expected_authorization_;
  std::string redirect_base_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::atomic<int> unauthorized_{0};
  std::atomic<int> authorized_{0};
  std::thread thread_;
};

// Writes a fresh self-signed certificate for IP 127.0.0.1 (usable as its own CA) and its key.
absl::Status WriteSelfSignedCertificate(const std::string& certificate_path,
                                        const std::string& key_path);

}  // namespace kiln::builder::testing
