// The progress line under a followed log: what reaches the terminal, byte for byte.
#include "cli/progress_line.h"

#include <catch2/catch.hpp>

#include <ostream>
#include <sstream>

#include "absl/synchronization/notification.h"

namespace kiln::cli {
namespace {

constexpr char kErase[] = "\r\x1b[K";

TEST_CASE("The progress line is erased before log bytes and redrawn at a line start") {
  std::stringstream terminal;
  ProgressLine progress(terminal.rdbuf(), terminal.rdbuf(), 40);
  std::ostream log(progress.log_buffer());

  progress.SetStatus("web-1 BUILDING 3s");
  CHECK(terminal.str() == std::string(kErase) + "web-1 BUILDING 3s");

  terminal.str("");
  log << "STEP 1/2: FROM base\n";
  CHECK(terminal.str() ==
        std::string(kErase) + "STEP 1/2: FROM base\n" + kErase + "web-1 BUILDING 3s");

  // In the middle of a line nothing is drawn, so the line is never split...
  terminal.str("");
  log << "STEP 2/2: RUN ";
  progress.SetStatus("web-1 BUILDING 4s");
  CHECK(terminal.str() == std::string(kErase) + "STEP 2/2: RUN ");
  // ...until the line ends.
  terminal.str("");
  log << "make\n";
  CHECK(terminal.str() == "make\n" + std::string(kErase) + "web-1 BUILDING 4s");

  // Closed: erased, and nothing drawn again.
  terminal.str("");
  progress.Close();
  progress.SetStatus("web-1 SUCCEEDED");
  log << "after\n";
  CHECK(terminal.str() == std::string(kErase) + "after\n");
}

TEST_CASE("The progress line's text is printable and never wider than the terminal") {
  CHECK(ProgressLine::Printable("plain", 80) == "plain");
  CHECK(ProgressLine::Printable("a\x1b]0;owned\x07z", 80) == "a?]0;owned?z");
  CHECK(ProgressLine::Printable("tab\there\r\n", 80) == "tab?here??");
  CHECK(ProgressLine::Printable("c1 \xc2\x9b"
                                "2J",
                                80) == "c1 ?2J");
  CHECK(ProgressLine::Printable("0123456789", 6) == "01234");
  // UTF-8 counts one column a character and is never cut inside a character.
  CHECK(ProgressLine::Printable("\xc3\xa9t\xc3\xa9", 3) == "\xc3\xa9t");
  CHECK(ProgressLine::Printable("ab\xe2\x82", 80) == "ab??");
}

TEST_CASE("A ticker calls at once and then periodically until destroyed") {
  absl::Notification first;
  absl::Mutex mu;
  int calls = 0;
  {
    Ticker ticker(absl::Milliseconds(1), [&] {
      absl::MutexLock lock(&mu);
      if (++calls == 3) first.Notify();
    });
    REQUIRE(first.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }
  absl::MutexLock lock(&mu);
  const int at_destruction = calls;
  CHECK(at_destruction >= 3);
}

}  // namespace
}  // namespace kiln::cli
