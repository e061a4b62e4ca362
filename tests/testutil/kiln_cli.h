// Running the real `kiln` binary from Catch2 tests: the command with its exit code and output,
// an environment variable for a scope (the processes a test starts inherit it), and the lines
// of what it printed.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "tests/testutil/process.h"

namespace kiln::testutil {

// Runs `kiln --address <address> args...`; returns the exit code, stdout and stderr in `out`.
inline int KilnAt(const std::string& address, std::vector<std::string> args, std::string* out) {
  args.insert(args.begin(), {"--address", address});
  absl::StatusOr<int> code = RunCommand(BinaryPath("kiln"), args, out, absl::Seconds(90));
  REQUIRE(code.ok());
  return *code;
}

// Sets an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// The non-empty lines of `text`.
inline std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

}  // namespace kiln::testutil
