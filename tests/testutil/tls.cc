#include "tests/testutil/tls.h"

#include <fstream>

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {
namespace {

std::string SslErrors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? std::string(std::strerror(errno)) : text;
}

}  // namespace

absl::Status MakeCertificate(const std::string& dir, const std::string& name) {
  std::string out;
  auto code = RunCommand("/usr/bin/openssl",
                         {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                          "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                          dir + "/" + name + ".key", "-out", dir + "/" + name + ".pem"},
                         &out);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("openssl req: ", out));
  return absl::OkStatus();
}

absl::Status MakeSignedCertificate(const std::string& dir, const std::string& ca,
                                   const std::string& name) {
  const std::string base = dir + "/" + name;
  std::ofstream(base + ".ext") << "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "extendedKeyUsage=serverAuth,clientAuth\n";
  std::string out;
  auto code = RunCommand("/usr/bin/openssl",
                         {"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                          "-keyout", base + ".key", "-out", base + ".csr"},
                         &out);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("openssl req: ", out));
  code = RunCommand("/usr/bin/openssl",
                    {"x509", "-req", "-in", base + ".csr", "-CA", dir + "/" + ca + ".pem", "-CAkey",
                     dir + "/" + ca + ".key", "-CAcreateserial", "-days", "1", "-extfile",
                     base + ".ext", "-out", base + ".pem"},
                    &out);
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("openssl x509: ", out));
  return absl::OkStatus();
}

absl::StatusOr<std::string> TlsExchange(int port, const std::string& data,
                                        const TlsClientOptions& tls) {
  ::signal(SIGPIPE, SIG_IGN);  // A server that closes first must not end the test.
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  if (!ctx) return absl::InternalError(SslErrors());
  if (!tls.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("ca: ", SslErrors()));
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  if (!tls.cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
    return absl::InvalidArgumentError(absl::StrCat("client certificate: ", SslErrors()));
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  const int64_t ms = absl::ToInt64Milliseconds(tls.timeout);
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(error)));
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), "127.0.0.1");
  if (SSL_connect(ssl.get()) != 1) {
    std::string why = SslErrors();
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("TLS handshake: ", why));
  }
  for (size_t sent = 0; sent < data.size();) {
    int n = SSL_write(ssl.get(), data.data() + sent, static_cast<int>(data.size() - sent));
    if (n <= 0) break;  // The server may answer before it reads everything.
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[8192];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl.get(), buffer, sizeof(buffer));
    if (n > 0) {
      response.append(buffer, static_cast<size_t>(n));
      continue;
    }
    const int error = SSL_get_error(ssl.get(), n);
    if (error != SSL_ERROR_ZERO_RETURN && response.empty()) {
      std::string why = SslErrors();
      ::close(fd);
      return absl::DataLossError(absl::StrCat("TLS read: ", why));
    }
    break;
  }
  ::close(fd);
  return response;
}

absl::StatusOr<HttpReply> HttpsCall(int port, const std::string& method, const std::string& path,
                                    const TlsClientOptions& tls, const HttpCallOptions& options) {
  HttpCallOptions plain = options;
  plain.chunked = false;
  absl::StatusOr<std::string> response =
      TlsExchange(port, FormatHttpRequest(port, method, path, plain) + options.body, tls);
  if (!response.ok()) return response.status();
  return ParseHttpReply(*response);
}

}  // namespace kiln::testutil
