// `kiln completion bash|zsh`: a shell completion script written from the CLI11 app itself, so
// a new command or flag completes without anyone editing a script. CLI11 has no generator; the
// script completes command words and each command's flags (not flag values or ids).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace kiln::cli {

enum class Shell { kBash, kZsh };

// The script for `shell`: bash's is sourced (`source <(kiln completion bash)`), zsh's is put on
// $fpath as `_kiln` or sourced after compinit. `program` is the command it completes.
std::string CompletionScript(const CLI::App& app, Shell shell, const std::string& program);

}  // namespace kiln::cli
