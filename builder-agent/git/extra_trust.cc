#include "builder-agent/git/extra_trust.h"

#include <arpa/inet.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "absl/strings/str_cat.h"

namespace kiln::builder {

absl::StatusOr<std::unique_ptr<ExtraTrust>> ExtraTrust::Load(const std::string& pem_file) {
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return absl::InternalError("allocating a certificate store");
  if (X509_STORE_load_file(store, pem_file.c_str()) != 1) {
    X509_STORE_free(store);
    return absl::InvalidArgumentError(
        absl::StrCat("no certificate authority could be read from ", pem_file));
  }
  return std::unique_ptr<ExtraTrust>(new ExtraTrust(store));
}

ExtraTrust::~ExtraTrust() { X509_STORE_free(store_); }

absl::Status ExtraTrust::Verify(const void* der, size_t length, const std::string& host) const {
  const auto* bytes = static_cast<const unsigned char*>(der);
  X509* cert = d2i_X509(nullptr, &bytes, static_cast<long>(length));
  if (cert == nullptr) return absl::FailedPreconditionError("unreadable server certificate");
  X509_STORE_CTX* context = X509_STORE_CTX_new();
  int verified = 0;
  int error = X509_V_ERR_UNSPECIFIED;
  if (context != nullptr && X509_STORE_CTX_init(context, store_, cert, nullptr) == 1) {
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(context);
    unsigned char address[16];
    bool is_ip = ::inet_pton(AF_INET, host.c_str(), address) == 1 ||
                 ::inet_pton(AF_INET6, host.c_str(), address) == 1;
    int named = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                      : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    if (named == 1) {
      verified = X509_verify_cert(context);
      error = X509_STORE_CTX_get_error(context);
    }
  }
  X509_STORE_CTX_free(context);
  X509_free(cert);
  if (verified == 1) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("certificate of ", host,
                   " not trusted by the extra CAs either: ", X509_verify_cert_error_string(error)));
}

}  // namespace kiln::builder
