// The JSON scalars search attribute values are made of.
#include "common/json_scalar.h"

#include <limits>

#include <catch2/catch.hpp>

namespace kiln::json {
namespace {

TEST_CASE("JSON strings decode escapes, surrogate pairs and surrounding whitespace") {
  CHECK(ParseString(R"("web")").value() == "web");
  CHECK(ParseString(" \t\"web\"\r\n").value() == "web");
  CHECK(ParseString(R"("")").value().empty());
  CHECK(ParseString(R"("a\"b\\c\/d\b\f\n\r\t")").value() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(ParseString(R"("\u00e9\u20AC")").value() == "\xc3\xa9\xe2\x82\xac");
  CHECK(ParseString(R"("\ud83d\ude00")").value() == "\xf0\x9f\x98\x80");
  CHECK(ParseString("\"\xc3\xa9\"").value() == "\xc3\xa9");
  CHECK(ParseString(R"("\u0000")").value() == std::string(1, '\0'));
}

TEST_CASE("JSON strings refuse anything else") {
  for (std::string_view bad : {"",
                               "\"",
                               "web",
                               "\"web",
                               "web\"",
                               "\"a\"b\"",
                               "\"a\" \"b\"",
                               "\"\\\"",
                               "\"\\x\"",
                               "\"\\u12\"",
                               "\"\\u12g4\"",
                               "\"\\ud83d\"",
                               "\"\\ud83dx\"",
                               "\"\\ud83d\\u0041\"",
                               "\"\\ude00\"",
                               "\"\x01\"",
                               "\"\n\"",
                               "\"\xc3\"",
                               "\"\xff\"",
                               "1",
                               "null",
                               "[\"a\"]"}) {
    INFO(bad);
    CHECK(ParseString(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("JSON integers take the whole int64 range and nothing else") {
  CHECK(ParseInt("0").value() == 0);
  CHECK(ParseInt("-0").value() == 0);
  CHECK(ParseInt(" 42 ").value() == 42);
  CHECK(ParseInt("9223372036854775807").value() == std::numeric_limits<int64_t>::max());
  CHECK(ParseInt("-9223372036854775808").value() == std::numeric_limits<int64_t>::min());
  for (std::string_view bad : {"", "-", "+1", "01", "-01", "1.0", "1e3", "0x10", "\"1\"", "1 2",
                               "9223372036854775808", "-9223372036854775809", "true"}) {
    INFO(bad);
    CHECK(ParseInt(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("JSON booleans are true and false only") {
  CHECK(ParseBool("true").value());
  CHECK_FALSE(ParseBool(" false\n").value());
  for (std::string_view bad : {"", "True", "1", "\"true\"", "truex"}) {
    INFO(bad);
    CHECK(ParseBool(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("EncodeString escapes what JSON needs escaped and round-trips") {
  CHECK(EncodeString("web") == R"("web")");
  CHECK(EncodeString("a\"b\\c\n\x01") == R"("a\"b\\c\n\u0001")");
  for (const std::string& value : {std::string(""), std::string("caf\xc3\xa9"),
                                   std::string("tab\there"), std::string(3, '\0')}) {
    CHECK(ParseString(EncodeString(value)).value() == value);
  }
}

TEST_CASE("UTF-8 validation refuses overlong forms, surrogates and stray bytes") {
  CHECK(IsValidUtf8("plain"));
  CHECK(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  CHECK(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  for (std::string_view bad : {"\x80", "\xc0\xaf", "\xc3", "\xe0\x80\xaf", "\xed\xa0\x80",
                               "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80", "\xff"}) {
    CHECK_FALSE(IsValidUtf8(bad));
  }
}

}  // namespace
}  // namespace kiln::json
