// The builder agent's command runner: runs one step (git helper, podman, a user command) as a
// child process in its own process group, streams its merged stdout+stderr line by line to a
// sink with secrets redacted, keeps a private step's output on the machine, and on cancel or
// timeout ends the step's whole process tree quickly (TERM, then KILL after a short grace).
//
// Every step runs under a small "shim": a forked copy of the agent that is the child
// subreaper for the step, so processes orphaned inside the step are reaped at once (not by a
// slow init), and whose report says when the step's process group is really gone. With
// `isolate`, the step also runs as PID 1 of its own PID and mount namespace (root only): when it
// dies the kernel kills everything it started, even processes that left its process group
// (podman's RUN containers do), and bind mounts apply to the step alone.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::builder {

// Limits, checked before anything is started.
inline constexpr size_t kMaxArgs = 4096;
inline constexpr size_t kMaxArgvEnvBytes = 1 << 20;
inline constexpr size_t kMaxStdinBytes = 1 << 20;
inline constexpr size_t kMaxSecrets = 64;
inline constexpr size_t kMaxSecretBytes = 4096;
inline constexpr size_t kMaxBindMounts = 16;
inline constexpr absl::Duration kMaxTimeout = absl::Hours(24);
// A longer line is cut at this many bytes and marked with kTruncatedMarker.
inline constexpr size_t kMaxLineBytes = 8 * 1024;
inline constexpr std::string_view kTruncatedMarker = " [line truncated]";
// How much of a public step's (redacted) output the result keeps.
inline constexpr size_t kOutputTailBytes = 4096;
// The cancelled() callback is polled at least this often.
inline constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
inline constexpr absl::Duration kMaxKillGrace = absl::Seconds(1);
inline constexpr std::string_view kRedacted = "***";

struct BindMount {
  std::string source;
  std::string target;  // Created (as a directory) when missing.
};

struct CommandSpec {
  std::string name;               // Shown in errors and in a private step's summary line.
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'.
  // Added to (or replacing entries of) the agent's own environment.
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;  // Empty: the agent's.
  bool is_private = false;  // Output never reaches the sink, only "[private step: NAME] ...".
  std::vector<std::string> secrets;  // Replaced by "***" in every line and error message.
  absl::Duration timeout = absl::Hours(1);
  std::string stdin_data;                               // Empty: stdin is /dev/null.
  absl::Duration kill_grace = absl::Milliseconds(500);  // TERM → KILL; at most kMaxKillGrace.
  // Own PID + mount namespace (needs CAP_SYS_ADMIN); required for bind_mounts.
  bool isolate = false;
  std::vector<BindMount> bind_mounts;
};

struct CommandResult {
  int exit_code = 0;  // 128+N when killed by signal N.
  absl::Duration duration;
  std::string output_tail;  // Last kOutputTailBytes of redacted output; empty when private.
  int64_t output_lines = 0;
};

using LineSink = std::function<void(std::string_view line)>;

// Runs the step to completion. A non-zero exit is a result, not an error. Returns Cancelled
// when cancelled() said so, DeadlineExceeded on timeout (in both cases after the step's process
// group is gone), InvalidArgument when a limit is exceeded, and Internal/NotFound when the step
// could not be started. Errors never contain a secret. `cancelled` may be empty.
absl::StatusOr<CommandResult> RunCommand(const CommandSpec& spec, const LineSink& sink,
                                         const std::function<bool()>& cancelled);

// Replaces every occurrence of every non-empty secret (and of each line of a multi-line secret)
// with "***".
std::string Redact(std::string_view text, const std::vector<std::string>& secrets);

// True when this process may create PID and mount namespaces (what `isolate` needs).
bool CanIsolate();

}  // namespace kiln::builder
