// TLS for Kiln's gRPC listeners and clients, from PEM files named by flags: the orchestrator's
// listener, kiln-worker's BuildService, and the clients that reach them (kiln-worker and the
// builder agent to the orchestrator, the CLI to both). And the warning a listener beyond
// loopback without TLS gets.
#pragma once

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace kiln {

// The contents of a PEM file; kInvalidArgument naming `flag` when it is missing, unreadable
// or empty.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view flag);

// A listener's credentials: plain without `cert_file`; else TLS with the PEM certificate chain
// and key, and (with `client_ca_file`) clients required to present a certificate signed by that
// CA. kInvalidArgument naming the flag when a file is missing or unreadable, or only one of cert
// and key is given. `flag_prefix` names the flags in errors ("--tls" gives --tls-cert ...).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file,
    absl::string_view flag_prefix = "--tls");

// What a client needs to speak TLS: the CA that signed the server's certificate (empty: the
// system's roots) and, for mutual TLS, its own certificate chain and key (PEM contents).
struct ClientTls {
  bool enabled = false;
  std::string root_certs;
  std::string cert_chain;
  std::string private_key;
};
// Reads the files (any of them set turns TLS on); kInvalidArgument naming the flag as above.
absl::StatusOr<ClientTls> ReadClientTls(const std::string& ca_file, const std::string& cert_file,
                                        const std::string& key_file,
                                        absl::string_view flag_prefix = "--tls");

// True for loopback hosts (127.0.0.0/8, ::1, localhost); false for a wildcard or anything else.
bool IsLoopbackHost(const std::string& host);

// Logs `<program>.insecure_listener` (warning) and prints it on stderr when `host` is not a
// loopback address and the listener has no TLS: tokens and payloads would cross the network in
// the clear. `what` names the listener and its flag ("the gRPC listener (--listen)"). Returns
// whether it warned.
bool WarnIfExposedWithoutTls(absl::string_view program, absl::string_view what,
                             const std::string& host, bool tls);

}  // namespace kiln
