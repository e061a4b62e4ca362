// Configuration from flags and KILN_* environment variables (a flag wins over the environment),
// validated so that a bad value is named in the error. Built on CLI11.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "common/logging.h"

namespace kiln {

// Flags every binary shares.
struct CommonFlags {
  std::string log_format = "text";
  std::string log_level = "info";
};

// Adds --version, --log-format (KILN_LOG_FORMAT) and --log-level (KILN_LOG_LEVEL).
void AddCommonFlags(CLI::App& app, CommonFlags* flags);

// Applies the common flags (configures the default logger) and calls ConfigureMutexes.
void ApplyCommonFlags(const CommonFlags& flags);

// Process-wide absl::Mutex settings for optimised builds (the deadlock detector off).
void ConfigureMutexes();

// Parses argv. Returns -1 when the program should go on, otherwise the exit code to return
// (0 after --help or --version, 2 after a usage error, whose message went to stderr).
int ParseFlags(CLI::App& app, int argc, char** argv);

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;
};

// Parses "host:port" or "[v6]:port"; `what` names the setting in the error, e.g.
// "--listen: '127.0.0.1:99999' has a port outside 0..65535".
absl::StatusOr<HostPort> ParseHostPort(const std::string& value, const std::string& what);

// A CLI11 validator that accepts "host:port".
CLI::Validator HostPortValidator();

}  // namespace kiln
