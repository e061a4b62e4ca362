// Minimal JSON scalars; see json_scalar.h for why this is not google.protobuf.Value.
#include "common/json_scalar.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace kiln::json {
namespace {

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The text with JSON whitespace trimmed from both ends.
std::string_view TrimJsonSpace(std::string_view text) {
  while (!text.empty() && IsJsonSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsJsonSpace(text.back())) text.remove_suffix(1);
  return text;
}

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    out->push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

// Reads the four hex digits of a \u escape starting at text[*i]; advances *i past them.
bool ReadHex4(std::string_view text, size_t* i, uint32_t* out) {
  if (text.size() - *i < 4) return false;
  uint32_t value = 0;
  for (size_t k = 0; k < 4; ++k) {
    char c = text[*i + k];
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      value |= static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      value |= static_cast<uint32_t>(c - 'A' + 10);
    } else {
      return false;
    }
  }
  *i += 4;
  *out = value;
  return true;
}

}  // namespace

void AppendJsonEscaped(std::string_view value, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t i = 0;
  while (i < value.size()) {
    // Copy the run of bytes that need no escape at once.
    size_t run = i;
    while (run < value.size() && static_cast<unsigned char>(value[run]) >= 0x20 &&
           value[run] != '"' && value[run] != '\\') {
      ++run;
    }
    out->append(value.data() + i, run - i);
    if (run == value.size()) return;
    auto c = static_cast<unsigned char>(value[run]);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xF]);
    }
    i = run + 1;
  }
}

std::string EncodeString(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 2);
  out.push_back('"');
  AppendJsonEscaped(value, &out);
  out.push_back('"');
  return out;
}

absl::StatusOr<std::string> ParseString(std::string_view text) {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("not valid UTF-8");
  text = TrimJsonSpace(text);
  if (text.size() < 2 || text.front() != '"' || text.back() != '"') {
    return absl::InvalidArgumentError("not a JSON string");
  }
  std::string out;
  // The closing quote must be the last byte: an unescaped quote earlier ends the string early.
  const size_t end = text.size() - 1;
  out.reserve(end - 1);
  for (size_t i = 1; i < end;) {
    // Copy the run of bytes that are neither escapes nor errors at once.
    size_t run = i;
    while (run < end && static_cast<unsigned char>(text[run]) >= 0x20 && text[run] != '"' &&
           text[run] != '\\') {
      ++run;
    }
    out.append(text.data() + i, run - i);
    if (run == end) break;
    i = run;
    char c = text[i++];
    if (c == '"') return absl::InvalidArgumentError("not a JSON string: text after the string");
    if (static_cast<unsigned char>(c) < 0x20) {
      return absl::InvalidArgumentError("not a JSON string: unescaped control character");
    }
    // The run stopped at a quote, a control character or, from here on, a backslash.
    if (i == end) return absl::InvalidArgumentError("not a JSON string: escape at the end");
    char e = text[i++];
    switch (e) {
      case '"':
      case '\\':
      case '/':
        out.push_back(e);
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        uint32_t unit;
        if (i > end || !ReadHex4(text.substr(0, end), &i, &unit)) {
          return absl::InvalidArgumentError("not a JSON string: bad \\u escape");
        }
        if (unit >= 0xDC00 && unit <= 0xDFFF) {
          return absl::InvalidArgumentError("not a JSON string: lone low surrogate");
        }
        if (unit >= 0xD800 && unit <= 0xDBFF) {
          // A high surrogate must be followed by an escaped low one: together one code point.
          uint32_t low;
          if (end - i < 6 || text[i] != '\\' || text[i + 1] != 'u') {
            return absl::InvalidArgumentError("not a JSON string: lone high surrogate");
          }
          i += 2;
          if (!ReadHex4(text.substr(0, end), &i, &low) || low < 0xDC00 || low > 0xDFFF) {
            return absl::InvalidArgumentError("not a JSON string: lone high surrogate");
          }
          unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
        }
        AppendUtf8(unit, &out);
        break;
      }
      default:
        return absl::InvalidArgumentError("not a JSON string: bad escape");
    }
  }
  return out;
}

absl::StatusOr<int64_t> ParseInt(std::string_view text) {
  text = TrimJsonSpace(text);
  // JSON's integer grammar: -?(0|[1-9][0-9]*). SimpleAtoi alone would also take "+1" or " 1".
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  bool shaped = !digits.empty() && (digits.size() == 1 || digits.front() != '0');
  for (char c : digits) shaped = shaped && c >= '0' && c <= '9';
  if (!shaped) return absl::InvalidArgumentError("not a JSON integer");
  int64_t value;
  if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &value)) {
    return absl::InvalidArgumentError("JSON integer out of the int64 range");
  }
  return value;
}

absl::StatusOr<bool> ParseBool(std::string_view text) {
  text = TrimJsonSpace(text);
  if (text == "true") return true;
  if (text == "false") return false;
  return absl::InvalidArgumentError("not a JSON boolean");
}

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char lead = byte(i);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code_point;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code_point = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return false;  // A continuation byte, an overlong 2-byte lead, or beyond U+10FFFF.
    }
    if (text.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (byte(i + k) & 0x3F);
    }
    if ((length == 3 && code_point < 0x800) || (length == 4 && code_point < 0x10000) ||
        code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

}  // namespace kiln::json
