#include "orchestrator/server/local_auth.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/credentials.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::orchestrator {

absl::Status PrepareDataDir(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: cannot create '", data_dir, "': ", ec.message()));
  }
  // The directory holds the key, the admin credential and every workflow's payloads: nobody
  // else's business, whatever the umask was.
  if (::chmod(data_dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: cannot chmod 0700 '", data_dir, "': ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<LocalAuth> SetUpLocalAuth(const std::string& data_dir, const std::string& key_file) {
  const std::filesystem::path dir(data_dir);
  const std::string key_path = key_file.empty() ? (dir / "auth.key").string() : key_file;
  const std::string admin_path = (dir / std::string(auth::kAdminTokenFileName)).string();
  absl::StatusOr<auth::TokenKey> key = auth::TokenKey::LoadOrCreate(key_path);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("--auth-key-file: ", key.status().message()));
  }
  if (absl::Status admin = auth::EnsureAdminToken(*key, admin_path, absl::Now()); !admin.ok()) {
    return absl::Status(admin.code(), absl::StrCat("admin credential: ", admin.message()));
  }
  return LocalAuth{.key = *std::move(key), .key_file = key_path, .admin_token_file = admin_path};
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  if (!in || content.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  }
  return content.str();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file) {
  if (cert_file.empty() && key_file.empty() && client_ca_file.empty()) {
    return grpc::InsecureServerCredentials();
  }
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both (or neither)");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(cert_file, "--tls-cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(key_file, "--tls-key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(client_ca_file, "--tls-client-ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  return h == "localhost" || h == "::1" || absl::StartsWith(h, "127.");
}

bool WarnIfExposedWithoutTls(const std::string& host, bool tls) {
  if (tls || IsLoopbackHost(host)) return false;
  const char* note =
      "the gRPC listener is reachable beyond loopback WITHOUT TLS: tokens and workflow data "
      "cross the network in the clear; listen on 127.0.0.1, or give --tls-cert and --tls-key";
  LogWarn("orchestrator.insecure_listener", {{"host", host}, {"note", note}});
  std::cerr << "WARNING: kiln-orchestrator: " << note << " (--listen host '" << host << "')\n";
  return true;
}

}  // namespace kiln::orchestrator
