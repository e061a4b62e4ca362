// What `kiln <command> --help` ends with: the command's own examples, then the exit codes every
// command shares. Each leaf command calls SetExamples; help_test walks the whole command tree
// and fails for a command without an example.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

namespace kiln::cli {

// The exit codes, as `--help` states them (rpc.h's ExitCode holds the values).
inline constexpr std::string_view kExitCodesHelp =
    "Exit codes: 0 ok; 1 the thing failed (a refused call, a failed workflow or deployment, a "
    "wait that timed out); 2 usage (a bad flag or value, or one the server refused); 3 not "
    "found (workflow, run, project, deployment); 4 unreachable (the orchestrator or platform "
    "address does not answer).";

// Sets `command`'s help footer to "Examples:" with one indented line per example, then the
// exit codes.
void SetExamples(CLI::App& command, std::initializer_list<std::string_view> examples);

// Whether `command`'s footer holds at least one example (set by SetExamples).
bool HasExamples(const CLI::App& command);

}  // namespace kiln::cli
