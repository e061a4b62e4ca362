// Flag values particular to the CLI: durations written the way people write them ("500ms",
// "10s", "5m", "1h") and workflow statuses written in lower case ("timed-out"). Each parser has
// a CLI11 validator beside it, so a bad value is a usage error (exit 2) that names the value.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kiln/api/v1/common.pb.h"

namespace kiln::cli {

// A finite duration above zero, in absl::ParseDuration's syntax.
absl::StatusOr<absl::Duration> ParsePositiveDuration(absl::string_view text);

// Adds `--name DURATION` storing into `*out` (whose current value is the default shown).
CLI::Option* AddDurationOption(CLI::App& app, const std::string& name, absl::Duration* out,
                               const std::string& description);

// The values --status accepts, in the order shown in help.
const std::vector<std::string>& StatusFlagValues();
// "running" -> WORKFLOW_EXECUTION_STATUS_RUNNING, "timed-out" -> ..._TIMED_OUT.
absl::StatusOr<api::v1::WorkflowExecutionStatus> ParseStatusFlag(absl::string_view text);
// A CLI11 validator that accepts what ParseStatusFlag accepts.
CLI::Validator StatusValidator();

}  // namespace kiln::cli
