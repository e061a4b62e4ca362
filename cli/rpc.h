// What every command does around its calls to the orchestrator: a deadline on each call, the
// caller identity recorded in history, protobuf JSON output, and one way of reporting a failed
// call ("kiln: <message>" on stderr) with the exit code scripts rely on (ExitCode).
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

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

// The process exit codes, documented in `kiln --help` and the README: a script can tell a
// missing workflow or an absent orchestrator from a failed one without reading the message.
enum ExitCode : int {
  kExitOk = 0,
  // The thing asked for failed: a call refused, a workflow failed, a wait timed out.
  kExitFailed = 1,
  // The command line is wrong (CLI11's parse errors), or the server refused a value in it.
  kExitUsage = 2,
  // What the command names (workflow, run, project, deployment) does not exist.
  kExitNotFound = 3,
  // The orchestrator or the platform address does not answer.
  kExitUnreachable = 4,
};

// The exit code of a call that failed with `code`.
int ExitCodeFor(grpc::StatusCode code);

// Where a command writes: results to `out`, errors and notes to `err`, log content (a run's or a
// build's log) to `log`. main() makes all three safe for a terminal (cli/terminal.h).
struct Io {
  std::ostream& out;
  std::ostream& err;
  std::ostream& log;
  // The server the calls go to and how to choose another, named in errors, e.g. "the
  // orchestrator at 127.0.0.1:7233 (--address, KILN_ADDRESS)".
  std::string server = "the server";
  // Only when standard output is a terminal and the output is a table: its raw buffer, where a
  // followed log keeps a live progress line (cli/progress_line.h), `terminal_columns` wide.
  std::streambuf* terminal = nullptr;
  int terminal_columns = 80;
};

std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout);

// "kiln-cli@<hostname>", recorded as the identity of starts and terminations.
std::string Identity();

// Writes "kiln: <message>" to `io.err`; returns `code`.
int ReportError(const Io& io, const std::string& message, int code = kExitFailed);
// Writes the failed call's message with what was tried and what to do, for the codes where the
// server's own words do not say (unreachable, refused token); returns ExitCodeFor(its code).
int ReportError(const Io& io, const grpc::Status& status);

// Canonical protobuf JSON of `message`, every field printed (zeros and empty ones too): one
// line, or indented when `pretty`.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message, bool pretty);
// Writes ToJson(message) and a newline to `io.out`; returns 0, or 1 after reporting an error.
int PrintJson(const Io& io, const google::protobuf::Message& message, bool pretty);

// Lists as JSON: with `document`, one JSON array holding an object a line (`--output json`);
// otherwise one object a line with no array around them (the older `--json`).
int PrintJsonList(const Io& io, const std::vector<const google::protobuf::Message*>& messages,
                  bool document);
template <class M>
int PrintJsonList(const Io& io, const std::vector<M>& messages, bool document) {
  std::vector<const google::protobuf::Message*> pointers;
  pointers.reserve(messages.size());
  for (const M& m : messages) pointers.push_back(&m);
  return PrintJsonList(io, pointers, document);
}

}  // namespace kiln::cli
