// Extra certificate authorities for https remotes, for a git server behind a private CA:
// libgit2 trusts the system's CA bundle only, so a server certificate it rejects is checked
// again here, against these CAs and for the host name. Loaded once; safe to share between
// threads (verification only reads the store).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

typedef struct x509_store_st X509_STORE;

namespace kiln::builder {

class ExtraTrust {
 public:
  // `pem_file` holds one or more PEM certificates. kInvalidArgument when none can be read.
  static absl::StatusOr<std::unique_ptr<ExtraTrust>> Load(const std::string& pem_file);
  ~ExtraTrust();
  ExtraTrust(const ExtraTrust&) = delete;
  ExtraTrust& operator=(const ExtraTrust&) = delete;

  // OK when the DER-encoded certificate chains to one of the CAs and names `host` (a DNS
  // name or an IP address); kFailedPrecondition with OpenSSL's reason otherwise.
  absl::Status Verify(const void* der, size_t length, const std::string& host) const;

 private:
  explicit ExtraTrust(X509_STORE* store) : store_(store) {}
  X509_STORE* store_;
};

}  // namespace kiln::builder
