// Conversions between absl::Status (our code) and grpc::Status (the wire). The codes have the
// same numbering by design, so the mapping is exact.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kiln {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace kiln
