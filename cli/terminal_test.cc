// SafeTextBuf: what reaches the terminal from ids, names and logs others chose.
#include <catch2/catch.hpp>

#include <sstream>

#include "cli/terminal.h"

namespace kiln::cli {
namespace {

std::string Through(SafeTextBuf::Mode mode, const std::string& text, size_t piece = 0) {
  std::ostringstream target;
  {
    SafeTextBuf buf(target.rdbuf(), mode);
    std::ostream out(&buf);
    if (piece == 0) {
      out << text;
    } else {
      for (size_t i = 0; i < text.size(); i += piece) out << text.substr(i, piece);
    }
  }
  return target.str();
}

TEST_CASE("Text output shows control characters escaped and keeps the rest") {
  using M = SafeTextBuf::Mode;
  CHECK(Through(M::kText, "plain id\twith tab\n") == "plain id\twith tab\n");
  // Retitle the window, clear the screen, ring the bell.
  CHECK(Through(M::kText, "wf\x1b]0;owned\x07\x1b[2J") == "wf\\x1b]0;owned\\x07\\x1b[2J");
  CHECK(Through(M::kText, "a\rb\x7f") == "a\\x0db\\x7f");
  // UTF-8 text passes; a C1 control (CSI as U+009B) does not.
  CHECK(Through(M::kText, "caf\xc3\xa9 \xe2\x82\xac \xc2\xa9") ==
        "caf\xc3\xa9 \xe2\x82\xac \xc2\xa9");
  CHECK(Through(M::kText,
                "x\xc2\x9b"
                "2J") == "x\\u009b2J");
  // Colour sequences are escaped in text output too.
  CHECK(Through(M::kText, "\x1b[31mred") == "\\x1b[31mred");
}

TEST_CASE("Log output passes colours and carriage returns and nothing else") {
  using M = SafeTextBuf::Mode;
  const std::string coloured = "\x1b[1;32mSTEP 1/2\x1b[0m\r\n";
  CHECK(Through(M::kLog, coloured) == coloured);
  CHECK(Through(M::kLog, "\x1b]0;owned\x07") == "\\x1b]0;owned\\x07");
  CHECK(Through(M::kLog, "\x1b[2J") == "\\x1b[2J");
  CHECK(Through(M::kLog, "end\x1b[") == "end\\x1b[");  // cut short: released escaped
  // Split across writes, byte by byte: the same answer.
  const std::string mixed = "a\x1b[33my\x1b[0m\xc2\x9b\xc3\xa9\x1b[5;9Hz";
  CHECK(Through(M::kLog, mixed, 1) == Through(M::kLog, mixed));
  CHECK(Through(M::kLog, mixed) == "a\x1b[33my\x1b[0m\\u009b\xc3\xa9\\x1b[5;9Hz");
}

TEST_CASE("Plain log output drops colours and still escapes other sequences") {
  using M = SafeTextBuf::Mode;
  CHECK(Through(M::kLogPlain, "\x1b[1;32mSTEP 1/2\x1b[0m\r\n") == "STEP 1/2\r\n");
  CHECK(Through(M::kLogPlain, "\x1b[2J") == "\\x1b[2J");
  const std::string mixed = "a\x1b[33my\x1b[0m\x1b]0;t\x07";
  CHECK(Through(M::kLogPlain, mixed, 1) == "ay\\x1b]0;t\\x07");
}

}  // namespace
}  // namespace kiln::cli
