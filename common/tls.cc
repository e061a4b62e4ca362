#include "common/tls.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  if (!in || content.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  }
  return content.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file,
    absl::string_view flag_prefix) {
  if (cert_file.empty() && key_file.empty() && client_ca_file.empty()) {
    return grpc::InsecureServerCredentials();
  }
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag_prefix, "-cert and ", flag_prefix, "-key: give both (or neither)"));
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(cert_file, absl::StrCat(flag_prefix, "-cert")));
  ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(key_file, absl::StrCat(flag_prefix, "-key")));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadPemFile(client_ca_file, absl::StrCat(flag_prefix, "-client-ca")));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<ClientTls> ReadClientTls(const std::string& ca_file, const std::string& cert_file,
                                        const std::string& key_file,
                                        absl::string_view flag_prefix) {
  ClientTls tls;
  if (ca_file.empty() && cert_file.empty() && key_file.empty()) return tls;
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag_prefix, "-cert and ", flag_prefix, "-key: give both (or neither)"));
  }
  tls.enabled = true;
  if (!ca_file.empty()) {
    ASSIGN_OR_RETURN(tls.root_certs, ReadPemFile(ca_file, absl::StrCat(flag_prefix, "-ca")));
  }
  if (!cert_file.empty()) {
    ASSIGN_OR_RETURN(tls.cert_chain, ReadPemFile(cert_file, absl::StrCat(flag_prefix, "-cert")));
    ASSIGN_OR_RETURN(tls.private_key, ReadPemFile(key_file, absl::StrCat(flag_prefix, "-key")));
  }
  return tls;
}

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  return h == "localhost" || h == "::1" || absl::StartsWith(h, "127.");
}

bool WarnIfExposedWithoutTls(absl::string_view program, absl::string_view what,
                             const std::string& host, bool tls) {
  if (tls || IsLoopbackHost(host)) return false;
  const std::string note =
      absl::StrCat(what,
                   " is reachable beyond loopback WITHOUT TLS: tokens and workflow data cross the "
                   "network in the clear; listen on 127.0.0.1, or give it a certificate");
  LogWarn(absl::StrCat(program, ".insecure_listener"), {{"host", host}, {"note", note}});
  std::cerr << "WARNING: " << program << ": " << note << " (host '" << host << "')\n";
  return true;
}

}  // namespace kiln
