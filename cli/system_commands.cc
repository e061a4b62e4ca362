// `kiln health` and `kiln info`; see system_commands.h.
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

}  // namespace kiln::cli
