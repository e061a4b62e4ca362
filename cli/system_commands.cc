// `kiln health`, `kiln info` and `kiln token revoke`; see system_commands.h.
#include "cli/system_commands.h"

#include "absl/strings/str_cat.h"
#include "cli/format.h"

namespace kiln::cli {

int CheckHealth(sdk::Connection& connection, absl::Duration timeout, const Io& io) {
  absl::Status status = connection.CheckHealth(timeout);
  if (!status.ok()) {
    // The health check's own status codes, mapped as a gRPC call's are.
    return ReportError(io, grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                                        std::string(status.message())));
  }
  io.out << "SERVING " << connection.address() << "\n";
  return 0;
}

int ShowInfo(sdk::Connection& connection, const Io& io) {
  kiln::api::v1::GetSystemInfoResponse response;
  grpc::Status status =
      connection.workflow_service().GetSystemInfo(CallContext(kCallTimeout).get(), {}, &response);
  if (!status.ok()) return ReportError(io, status);
  io.out << "address:  " << connection.address() << "\n"
         << "version:  " << response.server_version() << "\n"
         << "data dir: " << response.data_dir() << "\n"
         << "started:  " << FormatTimestamp(response.start_time()) << "\n";
  if (response.store_read_only()) {
    io.out << "store:    READ-ONLY since " << FormatTimestamp(response.store_read_only_since())
           << ": " << response.store_read_only_reason() << "\n";
  } else {
    io.out << "store:    writable\n";
  }
  return 0;
}

int RevokeToken(sdk::Connection& connection, const std::string& token_or_id, const Io& io) {
  kiln::api::v1::RevokeTokenRequest request;
  if (token_or_id.rfind("kiln1.", 0) == 0) {
    request.set_token(token_or_id);
  } else {
    request.set_id(token_or_id);
  }
  kiln::api::v1::RevokeTokenResponse response;
  grpc::Status status = connection.workflow_service().RevokeToken(CallContext(kCallTimeout).get(),
                                                                  request, &response);
  if (!status.ok()) return ReportError(io, status);
  io.out << (response.already_revoked() ? "already revoked " : "revoked ") << response.id()
         << " until " << FormatTimestamp(response.expire_time()) << "\n";
  return 0;
}

}  // namespace kiln::cli
