// Plain-text building blocks of the CLI's output: times, durations, enum names, payloads and
// failures in short form, quoted key=value pairs, and aligned tables. Pure functions, so the
// output can be tested without a server.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kiln/api/v1/common.pb.h"
#include "kiln/api/v1/failure.pb.h"

namespace kiln::cli {

// Payload data beyond this many characters is cut and ends in "...".
inline constexpr size_t kMaxValueChars = 80;

// "2026-11-27T14:00:00.123Z"; "-" for an unset timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& t);
// "2026-11-27 14:00:00" (UTC, whole seconds) for tables; "-" when unset.
std::string FormatTableTime(const google::protobuf::Timestamp& t);

// "500ms", "10s", "1m30s", "1h"; absl's short form.
std::string DurationText(absl::Duration d);
std::string DurationText(const google::protobuf::Duration& d);
// How long ago `then` was, rounded to whole seconds from a second up: "3s", "250ms", "0s".
std::string FormatAge(absl::Time then, absl::Time now);

// "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" with prefix "EVENT_TYPE_" -> "ActivityTaskScheduled".
std::string EnumToCamelCase(absl::string_view enum_name, absl::string_view prefix);
// "WORKFLOW_EXECUTION_STATUS_TIMED_OUT" with its prefix -> "TIMED_OUT"; unknown -> "".
std::string StripEnumPrefix(absl::string_view enum_name, absl::string_view prefix);

// "COMPLETED", "TIMED_OUT", ...; "UNKNOWN(42)" for a value this build does not know.
std::string StatusName(api::v1::WorkflowExecutionStatus status);

// A payload list in short form: the data of each payload (text as is, binary encodings as
// "<N bytes binary/protobuf>"), several joined as "[a, b]", cut to kMaxValueChars.
std::string PayloadsSummary(const api::v1::Payloads& payloads);
// A failure's message, with its application type when it has one: "boom (type=Flaky)".
std::string FailureSummary(const api::v1::Failure& failure);

// Quotes a value for key=value output when it is empty, starts with '"', or holds whitespace
// or control bytes (C-escaped inside the quotes); otherwise returns it as is.
std::string QuoteValue(absl::string_view value);
// `text` on one line: newlines, tabs, carriage returns and the other control bytes shown as
// "\x0a" and the like. For a table's cell: the terminal filter (terminal.h) lets newlines and
// tabs through, and one inside a workflow id or a reason would start a line of the server's
// data's choosing (a forged row).
std::string OneLine(absl::string_view text);
// Writes "label:" padded to `label_width`, then `value`. A value of several lines has its later
// lines indented to the value's column, so none of them can pass for a field of its own.
void WriteField(std::ostream& out, absl::string_view label, absl::string_view value,
                size_t label_width);
// Cuts `text` to at most `max_chars`, ending in "..." when cut.
std::string Truncate(absl::string_view text, size_t max_chars);

// Appends " key=value" (value quoted as needed) to a summary line being built.
class KeyValues {
 public:
  KeyValues& Add(absl::string_view key, absl::string_view value);
  KeyValues& Add(absl::string_view key, int64_t value);
  // Adds only when the value is non-empty / non-zero.
  KeyValues& AddIfSet(absl::string_view key, absl::string_view value);
  KeyValues& AddIfSet(absl::string_view key, int64_t value);
  // "a=1 b=x", no leading or trailing space.
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

// A text table: a header row and columns padded to their widest cell, two spaces apart. The
// last column is not padded, so lines carry no trailing spaces. Each cell is kept on its line
// (OneLine).
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  // A row shorter than the header is padded with empty cells; a longer one is an error the
  // caller made, and its extra cells are dropped.
  void AddRow(std::vector<std::string> row);
  size_t rows() const { return rows_.size(); }
  // Writes each line prefixed by `indent`.
  void Render(std::ostream& out, absl::string_view indent = "") const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kiln::cli
