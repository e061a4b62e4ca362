// Plain-text building blocks of the CLI's output; see format.h.
#include "cli/format.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

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
  age = absl::Trunc(age, age < absl::Seconds(1) ? absl::Milliseconds(1) : absl::Seconds(1));
  // absl writes a zero duration as "0"; an age column reads better with its unit.
  return age == absl::ZeroDuration() ? "0s" : DurationText(age);
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

// Columns a terminal gives code point `c`: two for the East Asian wide and fullwidth ranges
// (CJK, Hangul, kana, fullwidth forms, emoji), none for combining marks, zero-width spaces and
// variation selectors, one otherwise. The common ranges of Unicode's EastAsianWidth W and F,
// not the whole table: a rare character off by a column shifts its row, nothing worse.
size_t CodePointColumns(uint32_t c) {
  struct Range {
    uint32_t first, last;
  };
  static constexpr Range kNone[] = {{0x0300, 0x036F}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
                                    {0x200B, 0x200F}, {0x20D0, 0x20FF}, {0xFE00, 0xFE0F},
                                    {0xFE20, 0xFE2F}};
  static constexpr Range kTwo[] = {{0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},
                                   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},
                                   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFE30, 0xFE4F},
                                   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
                                   {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD}};
  auto in = [c](const auto& ranges) {
    return std::any_of(std::begin(ranges), std::end(ranges),
                       [c](const Range& r) { return c >= r.first && c <= r.last; });
  };
  if (in(kNone)) return 0;
  return in(kTwo) ? 2 : 1;
}

// Terminal columns of UTF-8 text. A byte that does not start a well-formed sequence counts
// one column (the terminal filter shows it as a replacement or an escape).
size_t Columns(absl::string_view text) {
  size_t columns = 0;
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = lead < 0x80           ? 1
                          : (lead >> 5) == 0x6  ? 2
                          : (lead >> 4) == 0xE  ? 3
                          : (lead >> 3) == 0x1E ? 4
                                                : 0;
    uint32_t c = length == 2 ? lead & 0x1F : length == 3 ? lead & 0x0F : lead & 0x07;
    bool formed = length > 0 && i + length <= text.size();
    for (size_t k = 1; formed && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      formed = (next & 0xC0) == 0x80;
      c = (c << 6) | (next & 0x3F);
    }
    if (!formed || length == 1) {
      columns += 1;
      i += 1;
      continue;
    }
    columns += CodePointColumns(c);
    i += length;
  }
  return columns;
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
