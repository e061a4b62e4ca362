// Git for Catch2 tests: testutil::Git with the test failing (and showing git's output) when
// the command does, instead of a status every call site checks.
#pragma once

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/testutil/process.h"

namespace kiln::testutil {

// Runs git (see Git) in `repo` and returns its trimmed output; REQUIREs that it succeeded.
inline std::string RequireGit(const std::string& repo, const std::vector<std::string>& args) {
  absl::StatusOr<std::string> output = Git(args, repo);
  INFO(output.status());
  REQUIRE(output.ok());
  return *output;
}

}  // namespace kiln::testutil
