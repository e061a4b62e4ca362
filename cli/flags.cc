// Duration and status flag values; see flags.h.
#include "cli/flags.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/format.h"

namespace kiln::cli {

namespace api = ::kiln::api::v1;

absl::StatusOr<absl::Duration> ParsePositiveDuration(absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a duration like 500ms, 10s, 5m or 1h"));
  }
  if (d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not above zero"));
  }
  return d;
}

CLI::Option* AddDurationOption(CLI::App& app, const std::string& name, absl::Duration* out,
                               const std::string& description) {
  CLI::Validator validator(
      [](std::string& value) -> std::string {
        auto parsed = ParsePositiveDuration(value);
        return parsed.ok() ? std::string() : std::string(parsed.status().message());
      },
      "DURATION", "duration");
  // CLI11 validates before it calls back, so the parse below cannot fail.
  return app
      .add_option_function<std::string>(
          name, [out](const std::string& value) { *out = ParsePositiveDuration(value).value(); },
          description)
      ->check(validator)
      ->default_str(DurationText(*out));
}

const std::vector<std::string>& StatusFlagValues() {
  static const auto* values = new std::vector<std::string>{
      "running", "completed", "failed", "canceled", "terminated", "timed-out", "continued-as-new"};
  return *values;
}

absl::StatusOr<api::WorkflowExecutionStatus> ParseStatusFlag(absl::string_view text) {
  const auto& values = StatusFlagValues();
  api::WorkflowExecutionStatus status;
  if (std::find(values.begin(), values.end(), text) == values.end() ||
      !api::WorkflowExecutionStatus_Parse(
          absl::StrCat("WORKFLOW_EXECUTION_STATUS_",
                       absl::AsciiStrToUpper(absl::StrReplaceAll(text, {{"-", "_"}}))),
          &status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a workflow status (", absl::StrJoin(values, ", "), ")"));
  }
  return status;
}

CLI::Validator StatusValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        auto parsed = ParseStatusFlag(value);
        return parsed.ok() ? std::string() : std::string(parsed.status().message());
      },
      "STATUS", "workflow status");
}

}  // namespace kiln::cli
