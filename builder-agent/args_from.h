// `kiln-builder-agent --args-from FILE ...`: the rest of the agent's arguments and environment
// read from FILE before anything else. A microVM's init starts the agent with a pipe here
// before the machine is snapshotted, so that a wake restores an agent already loaded (its
// libraries linked, its static state built) and only hands it the project, the token and the
// flags (worker/machines/microvm_provider.h).
//
// FILE holds lines `arg=VALUE` (appended to the command line, in order) and `env=NAME=VALUE`
// (set in the environment, where the flags' KILN_* variables are read), up to a line `end` or
// the end of the file. Bounded: 256 arguments, 256 variables, 64 KiB in all; names are
// [A-Za-z_][A-Za-z0-9_]* and never LD_* (the dynamic loader's are not the agent's to take).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::builder {

inline constexpr size_t kMaxArgsFromArgs = 256;
inline constexpr size_t kMaxArgsFromEnv = 256;
inline constexpr size_t kMaxArgsFromBytes = 64 * 1024;

struct ArgsFrom {
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
};

// Parses the file's text. kInvalidArgument naming the line for anything else.
absl::StatusOr<ArgsFrom> ParseArgsFrom(const std::string& text);

// Reads `path` (waiting on a pipe until its writer sends `end` or closes) and parses it.
absl::StatusOr<ArgsFrom> ReadArgsFrom(const std::string& path);

}  // namespace kiln::builder
