// What every command does around its calls to the orchestrator: a deadline on each call, the
// caller identity recorded in history, protobuf JSON output, and one way of reporting a failed
// call ("kiln: <message>" on stderr, exit code 1).
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include <google/protobuf/message.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::cli {

// The deadline of an ordinary call.
inline constexpr absl::Duration kCallTimeout = absl::Seconds(10);
// The deadline of one long poll. The orchestrator answers a poll (empty if nothing happened)
// about a second before the caller's deadline, so a poll ends on time without an error.
inline constexpr absl::Duration kLongPollTimeout = absl::Seconds(30);
inline constexpr absl::Duration kLongPollMargin = absl::Seconds(1);

// Where a command writes: results to `out`, errors and notes to `err`, log content (a run's or a
// build's log) to `log`. main() makes all three safe for a terminal (cli/terminal.h).
struct Io {
  std::ostream& out;
  std::ostream& err;
  std::ostream& log;
};

std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout);

// "kiln-cli@<hostname>", recorded as the identity of starts and terminations.
std::string Identity();

// Writes "kiln: <message>" to `io.err`; returns exit code 1.
int ReportError(const Io& io, const std::string& message);
int ReportError(const Io& io, const grpc::Status& status);

// Canonical protobuf JSON of `message`: one line, or indented when `pretty`.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message, bool pretty);
// Writes ToJson(message) and a newline to `io.out`; returns 0, or 1 after reporting an error.
int PrintJson(const Io& io, const google::protobuf::Message& message, bool pretty);

}  // namespace kiln::cli
