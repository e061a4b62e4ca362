// Plain-text building blocks of the CLI's output; see format.h.
#include "cli/format.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/proto_time.h"

namespace kiln::cli {
namespace {

namespace api = ::kiln::api::v1;

// Quotes only where a reader could not tell where the value ends (whitespace, an empty value)
// or what it holds (control bytes), and when it starts with a quote, so that a quoted value is
// always recognizable as one. JSON such as {"n":1} stays as it is.
bool NeedsQuotes(absl::string_view value) {
  if (value.empty() || value.front() == '"') return true;
  for (unsigned char c : value) {
    if (c <= ' ' || c == 0x7f) return true;
  }
  return false;
}

std::string PayloadData(const api::Payload& payload) {
  auto it = payload.metadata().find("encoding");
  const std::string encoding = it == payload.metadata().end() ? "" : it->second;
  if (encoding == "binary/null") return "null";
  if (absl::StartsWith(encoding, "binary/")) {
    return absl::StrCat("<", payload.data().size(), " bytes ", encoding, ">");
  }
  return payload.data();
}

}  // namespace

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", FromProto(t), absl::UTCTimeZone());
}

std::string FormatTableTime(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", FromProto(t), absl::UTCTimeZone());
}

std::string DurationText(absl::Duration d) { return absl::FormatDuration(d); }

std::string DurationText(const google::protobuf::Duration& d) { return DurationText(FromProto(d)); }

std::string FormatAge(absl::Time then, absl::Time now) {
  absl::Duration age = std::max(now - then, absl::ZeroDuration());
  return DurationText(
      absl::Trunc(age, age < absl::Seconds(1) ? absl::Milliseconds(1) : absl::Seconds(1)));
}

std::string StripEnumPrefix(absl::string_view enum_name, absl::string_view prefix) {
  if (!absl::StartsWith(enum_name, prefix)) return "";
  return std::string(enum_name.substr(prefix.size()));
}

std::string EnumToCamelCase(absl::string_view enum_name, absl::string_view prefix) {
  std::string out;
  bool upper = true;
  for (char c : StripEnumPrefix(enum_name, prefix)) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper ? absl::ascii_toupper(c) : absl::ascii_tolower(c));
    upper = false;
  }
  return out;
}

std::string StatusName(api::WorkflowExecutionStatus status) {
  std::string name =
      StripEnumPrefix(api::WorkflowExecutionStatus_Name(status), "WORKFLOW_EXECUTION_STATUS_");
  if (name.empty()) return absl::StrCat("UNKNOWN(", static_cast<int>(status), ")");
  return name;
}

std::string PayloadsSummary(const api::Payloads& payloads) {
  if (payloads.payloads_size() == 1) {
    return Truncate(PayloadData(payloads.payloads(0)), kMaxValueChars);
  }
  std::vector<std::string> parts;
  for (const auto& payload : payloads.payloads()) parts.push_back(PayloadData(payload));
  if (parts.empty()) return "";
  return Truncate(absl::StrCat("[", absl::StrJoin(parts, ", "), "]"), kMaxValueChars);
}

std::string FailureSummary(const api::Failure& failure) {
  std::string text = failure.message();
  if (failure.has_application_failure_info() && !failure.application_failure_info().type().empty())
    absl::StrAppend(&text, " (type=", failure.application_failure_info().type(), ")");
  return Truncate(text, kMaxValueChars);
}

std::string QuoteValue(absl::string_view value) {
  if (!NeedsQuotes(value)) return std::string(value);
  return absl::StrCat("\"", absl::Utf8SafeCEscape(value), "\"");
}

std::string OneLine(absl::string_view text) {
  std::string line;
  line.reserve(text.size());
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      absl::StrAppendFormat(&line, "\\x%02x", c);
    } else {
      line.push_back(static_cast<char>(c));
    }
  }
  return line;
}

void WriteField(std::ostream& out, absl::string_view label, absl::string_view value,
                size_t label_width) {
  std::string padded = absl::StrCat(label, ":");
  padded.resize(std::max(label_width, padded.size()), ' ');
  const std::string indent(padded.size(), ' ');
  out << padded;
  for (size_t begin = 0;;) {
    size_t end = value.find('\n', begin);
    out << value.substr(begin, end == absl::string_view::npos ? end : end - begin) << "\n";
    if (end == absl::string_view::npos || end + 1 == value.size()) break;
    begin = end + 1;
    out << indent;
  }
}

std::string Truncate(absl::string_view text, size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  static constexpr absl::string_view kEllipsis = "...";
  size_t keep = max_chars > kEllipsis.size() ? max_chars - kEllipsis.size() : 0;
  // Do not cut a UTF-8 sequence in two: back off over continuation bytes.
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) --keep;
  return absl::StrCat(text.substr(0, keep), kEllipsis);
}

KeyValues& KeyValues::Add(absl::string_view key, absl::string_view value) {
  if (!text_.empty()) text_.push_back(' ');
  absl::StrAppend(&text_, key, "=", QuoteValue(value));
  return *this;
}

KeyValues& KeyValues::Add(absl::string_view key, int64_t value) {
  return Add(key, absl::StrCat(value));
}

KeyValues& KeyValues::AddIfSet(absl::string_view key, absl::string_view value) {
  return value.empty() ? *this : Add(key, value);
}

KeyValues& KeyValues::AddIfSet(absl::string_view key, int64_t value) {
  return value == 0 ? *this : Add(key, value);
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  for (std::string& cell : row) cell = OneLine(cell);
  rows_.push_back(std::move(row));
}

namespace {

// Terminal columns of UTF-8 text, one per code point (continuation bytes take none; wide
// characters, which take two, are not told apart).
size_t Columns(absl::string_view text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

}  // namespace

void Table::Render(std::ostream& out, absl::string_view indent) const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], Columns(row[i]));
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto write = [&](const std::vector<std::string>& row) {
    std::string line(indent);
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line.append("  ");
      line.append(row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - Columns(row[i]), ' ');
    }
    // Empty trailing cells would leave padding behind.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  };
  write(header_);
  for (const auto& row : rows_) write(row);
}

}  // namespace kiln::cli
