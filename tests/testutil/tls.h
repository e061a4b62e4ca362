// TLS for tests: certificates made with the openssl command, and an HTTPS client over OpenSSL
// (blocking, one request per connection) to check a server's TLS from the client's side.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testutil/http.h"

namespace kiln::testutil {

// A self-signed certificate for 127.0.0.1 (also its own CA): `dir`/`name`.pem and .key.
absl::Status MakeCertificate(const std::string& dir, const std::string& name);

// A certificate for 127.0.0.1 signed by the authority `dir`/`ca`.pem (made by MakeCertificate):
// `dir`/`name`.pem and .key, not itself a CA. Stricter TLS stacks (rustls, in Temporal's SDK
// core) refuse a self-signed CA certificate presented as a server's or client's own.
absl::Status MakeSignedCertificate(const std::string& dir, const std::string& ca,
                                   const std::string& name);

struct TlsClientOptions {
  std::string ca_file;    // the server's certificate must verify against it (empty: unchecked)
  std::string cert_file;  // a client certificate, for mutual TLS
  std::string key_file;
  absl::Duration timeout = absl::Seconds(10);  // per read or write
};

// Connects to 127.0.0.1:`port`, does the TLS handshake, sends `data` and reads until the server
// closes. Unavailable when the connection or the handshake fails, DataLoss when the server
// ends the connection with an error before it answered anything.
absl::StatusOr<std::string> TlsExchange(int port, const std::string& data,
                                        const TlsClientOptions& tls);

// HttpCall over TLS (the body sent with Content-Length; no chunking).
absl::StatusOr<HttpReply> HttpsCall(int port, const std::string& method, const std::string& path,
                                    const TlsClientOptions& tls,
                                    const HttpCallOptions& options = {});

}  // namespace kiln::testutil
