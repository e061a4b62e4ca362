#include "builder-agent/git/smart_http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "openssl/pem.h"
#include "openssl/x509v3.h"

extern char** environ;

namespace kiln::builder::testing {

// A connection or pipe: plain file descriptor, or TLS on one.
struct Channel {
  Channel(int f) : fd(f) {}  // NOLINT: pipes and plain sockets convert implicitly
  Channel(int f, SSL* s) : fd(f), ssl(s) {}
  ssize_t Read(char* buffer, size_t size) const {
    if (ssl == nullptr) return ::read(fd, buffer, size);
    int n = SSL_read(ssl, buffer, static_cast<int>(std::min<size_t>(size, INT32_MAX)));
    return n > 0 ? n : (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
  }
  ssize_t Write(const char* data, size_t size) const {
    if (ssl == nullptr) return ::write(fd, data, size);
    int n = SSL_write(ssl, data, static_cast<int>(std::min<size_t>(size, INT32_MAX)));
    return n > 0 ? n : -1;
  }
  int fd;
  SSL* ssl = nullptr;
};

namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;

bool WriteAll(Channel channel, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = channel.Write(data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads from `fd` into `buffer` until it holds at least `size` bytes; false on EOF or error.
bool ReadAtLeast(Channel channel, std::string* buffer, size_t size) {
  char chunk[16384];
  while (buffer->size() < size) {
    ssize_t n = channel.Read(chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
  }
  return true;
}

// Decodes a chunked body that starts at `data`; reads more from `fd` as needed.
bool ReadChunked(Channel fd, std::string data, std::string* body) {
  for (;;) {
    size_t eol;
    while ((eol = data.find("\r\n")) == std::string::npos) {
      if (!ReadAtLeast(fd, &data, data.size() + 1)) return false;
    }
    size_t chunk_size = 0;
    std::string size_text(absl::StripAsciiWhitespace(data.substr(0, data.find_first_of(";\r"))));
    if (!absl::SimpleHexAtoi(size_text, &chunk_size)) return false;
    data.erase(0, eol + 2);
    if (!ReadAtLeast(fd, &data, chunk_size + 2)) return false;
    if (chunk_size == 0) return true;
    body->append(data, 0, chunk_size);
    if (body->size() > kMaxBodyBytes) return false;
    data.erase(0, chunk_size + 2);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SmartHttpServer>> SmartHttpServer::Start(std::string project_root,
                                                                        std::string token,
                                                                        std::string redirect_base) {
  return Start(std::move(project_root), std::move(token), std::move(redirect_base), TlsFiles{});
}

absl::StatusOr<std::unique_ptr<SmartHttpServer>> SmartHttpServer::Start(std::string project_root,
                                                                        std::string token,
                                                                        std::string redirect_base,
                                                                        const TlsFiles& tls) {
  if (!std::filesystem::exists(kHttpBackend)) {
    return absl::FailedPreconditionError(absl::StrCat(kHttpBackend, " is not installed"));
  }
  SSL_CTX* tls_context = nullptr;
  if (!tls.certificate.empty()) {
    tls_context = SSL_CTX_new(TLS_server_method());
    if (tls_context == nullptr ||
        SSL_CTX_use_certificate_file(tls_context, tls.certificate.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(tls_context, tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      SSL_CTX_free(tls_context);
      return absl::InternalError("loading the TLS certificate and key");
    }
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    SSL_CTX_free(tls_context);
    return absl::InternalError("socket failed");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    SSL_CTX_free(tls_context);
    return absl::InternalError(absl::StrCat("listening on 127.0.0.1: ", std::strerror(errno)));
  }
  return std::unique_ptr<SmartHttpServer>(
      new SmartHttpServer(fd, ntohs(addr.sin_port), std::move(project_root), std::move(token),
                          std::move(redirect_base), tls_context));
}

SmartHttpServer::SmartHttpServer(int listen_fd, int port, std::string project_root,
                                 std::string token, std::string redirect_base, SSL_CTX* tls)
    : listen_fd_(listen_fd),
      tls_(tls),
      port_(port),
      project_root_(std::move(project_root)),
      expected_authorization_(
          absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat("x-access-token:", token)))),
      redirect_base_(std::move(redirect_base)) {
  thread_ = std::thread([this] { Serve(); });
}

SmartHttpServer::~SmartHttpServer() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
  SSL_CTX_free(tls_);
}

std::string SmartHttpServer::Url(const std::string& repo_path) const {
  return absl::StrCat(tls_ == nullptr ? "http" : "https", "://127.0.0.1:", port_, "/", repo_path);
}

absl::Status WriteSelfSignedCertificate(const std::string& certificate_path,
                                        const std::string& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  absl::Status status = absl::OkStatus();
  if (key == nullptr || cert == nullptr) status = absl::InternalError("allocating key or cert");
  if (status.ok()) {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(::getpid()));
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("kiln test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1"},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      if (extension == nullptr || X509_add_ext(cert, extension, -1) != 1) {
        status = absl::InternalError("adding a certificate extension");
      }
      X509_EXTENSION_free(extension);
    }
    if (status.ok() && X509_sign(cert, key, EVP_sha256()) == 0) {
      status = absl::InternalError("signing the certificate");
    }
  }
  if (status.ok()) {
    FILE* out = std::fopen(certificate_path.c_str(), "w");
    bool written = out != nullptr && PEM_write_X509(out, cert) == 1;
    if (out != nullptr) std::fclose(out);
    out = std::fopen(key_path.c_str(), "w");
    written = written && out != nullptr &&
              PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    if (out != nullptr) std::fclose(out);
    if (!written) status = absl::InternalError("writing the certificate or key");
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  return status;
}

void SmartHttpServer::Serve() {
  while (!stop_) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    // A short poll so that the destructor's stop is seen promptly.
    if (::poll(&pfd, 1, 50) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (tls_ == nullptr) {
      Handle(fd);
    } else {
      SSL* ssl = SSL_new(tls_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) == 1) {
        Handle(Channel(fd, ssl));
        SSL_shutdown(ssl);
      }
      SSL_free(ssl);
    }
    ::close(fd);
  }
}

void SmartHttpServer::Handle(Channel fd) {
  std::string data;
  size_t header_end;
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
    if (data.size() > kMaxHeaderBytes || !ReadAtLeast(fd, &data, data.size() + 1)) return;
  }
  ++requests_;
  std::vector<std::string> lines = absl::StrSplit(data.substr(0, header_end), "\r\n");
  std::vector<std::string> request_line = absl::StrSplit(lines[0], ' ');
  if (request_line.size() != 3) return;
  std::map<std::string, std::string> headers;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  std::string rest = data.substr(header_end + 4);
  std::string body;
  if (absl::AsciiStrToLower(headers["transfer-encoding"]) == "chunked") {
    if (!ReadChunked(fd, rest, &body)) return;
  } else if (headers.count("content-length")) {
    size_t length = 0;
    if (!absl::SimpleAtoi(headers["content-length"], &length) || length > kMaxBodyBytes) return;
    if (!ReadAtLeast(fd, &rest, length)) return;
    body = rest.substr(0, length);
  }
  if (!redirect_base_.empty()) {
    WriteAll(fd,
             absl::StrCat("HTTP/1.1 301 Moved Permanently\r\nLocation: ", redirect_base_,
                          request_line[1], "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
    return;
  }
  if (headers["authorization"] != expected_authorization_) {
    ++unauthorized_;
    WriteAll(fd,
             "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kiln\"\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }

  ++authorized_;
  std::string target = request_line[1];
  size_t question = target.find('?');
  std::string path = target.substr(0, question);
  std::string query = question == std::string::npos ? "" : target.substr(question + 1);
  std::vector<std::string> env_storage = {
      absl::StrCat("GIT_PROJECT_ROOT=", project_root_),
      "GIT_HTTP_EXPORT_ALL=1",
      "GATEWAY_INTERFACE=CGI/1.1",
      "SERVER_PROTOCOL=HTTP/1.1",
      "REMOTE_ADDR=127.0.0.1",
      "REMOTE_USER=x-access-token",
      "PATH=/usr/bin:/bin",
      absl::StrCat("REQUEST_METHOD=", request_line[0]),
      absl::StrCat("PATH_INFO=", path),
      absl::StrCat("QUERY_STRING=", query),
      absl::StrCat("CONTENT_TYPE=", headers["content-type"]),
      absl::StrCat("CONTENT_LENGTH=", body.size()),
  };
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) return;
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string backend = kHttpBackend;
  char* argv[] = {backend.data(), nullptr};
  pid_t pid = -1;
  int spawned = ::posix_spawn(&pid, kHttpBackend, &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  if (spawned != 0) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    return;
  }
  // Feed the request body from another thread so that a backend writing before it has read
  // everything cannot deadlock us.
  std::thread feeder([&] {
    WriteAll(in_pipe[1], body);
    ::close(in_pipe[1]);
  });
  std::string output;
  ReadAtLeast(out_pipe[0], &output, SIZE_MAX);  // until EOF
  ::close(out_pipe[0]);
  feeder.join();
  int status = 0;
  ::waitpid(pid, &status, 0);

  size_t split = output.find("\r\n\r\n");
  size_t skip = 4;
  if (split == std::string::npos) {
    split = output.find("\n\n");
    skip = 2;
  }
  if (split == std::string::npos) {
    WriteAll(fd, "HTTP/1.1 500 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  std::string status_line = "200 OK";
  std::string response_headers;
  for (absl::string_view line : absl::StrSplit(output.substr(0, split), '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty()) continue;
    if (absl::StartsWithIgnoreCase(line, "Status:")) {
      status_line = std::string(absl::StripAsciiWhitespace(line.substr(7)));
    } else {
      absl::StrAppend(&response_headers, line, "\r\n");
    }
  }
  std::string response_body = output.substr(split + skip);
  WriteAll(fd, absl::StrCat("HTTP/1.1 ", status_line, "\r\n", response_headers, "Content-Length: ",
                            response_body.size(), "\r\nConnection: close\r\n\r\n", response_body));
}

}  // namespace kiln::builder::testing
