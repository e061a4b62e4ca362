// What a person sees: the real `kiln` binary in a real terminal (tmux, read back with
// capture-pane) against the build platform (BuildService in this process over the real
// workflows and a real kiln-orchestrator; the agent is faked so a build can be held). Checks
// `kiln deploy logs -f` while a build runs (the log so far, and a live progress line under it
// that counts the seconds), then when it ends (the line erased, the outcome, exit 0), and that
// a table's columns line up on screen.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/testutil/fake_platform.h"

namespace kiln::worker {
namespace {

using fakes::Hex40;
using testutil::BinaryPath;
using testutil::RunCommand;

constexpr absl::Duration kScreenWait = absl::Seconds(60);

std::string ShellQuote(const std::string& arg) {
  return "'" + absl::StrReplaceAll(arg, {{"'", "'\\''"}}) + "'";
}

// A tmux server of this test's own (its socket in a temporary directory), with one window per
// command; windows stay on screen after their command exits so the end can be read.
class Terminal {
 public:
  Terminal() : socket_(dir_.path() + "/tmux.sock") {
    testutil::WriteFile(dir_.path() + "/tmux.conf", "set -g remain-on-exit on\n");
  }
  ~Terminal() {
    std::string ignored;
    if (started_) (void)RunCommand("/usr/bin/tmux", {"-S", socket_, "kill-server"}, &ignored);
  }

  // Runs `args` (kiln's) in a new window `name`, 120 columns by 30 rows, then prints its exit
  // code on a row of its own.
  void Run(const std::string& name, const std::vector<std::string>& args) {
    std::vector<std::string> quoted = {ShellQuote(BinaryPath("kiln"))};
    for (const std::string& arg : args) quoted.push_back(ShellQuote(arg));
    // The exit code is printed after the command (tmux's own pane_dead_status needs its server
    // to reap the child, which an inherited signal mask can delay indefinitely).
    const std::string command = absl::StrJoin(quoted, " ") + "; echo \"" + kExitMark + "$?\"";
    std::vector<std::string> tmux = {"-S", socket_, "-f", dir_.path() + "/tmux.conf"};
    if (!started_) {
      tmux.insert(tmux.end(),
                  {"new-session", "-d", "-x", "120", "-y", "30", "-s", "t", "-n", name, command});
    } else {
      tmux.insert(tmux.end(), {"new-window", "-d", "-t", "t", "-n", name, command});
    }
    std::string out;
    auto code = RunCommand("/usr/bin/tmux", tmux, &out);
    INFO(out);
    REQUIRE(code.ok());
    REQUIRE(*code == 0);
    started_ = true;
  }

  // The window's screen, one string a row, trailing blank rows and the exit code's row
  // dropped. Rows scrolled into the history count too: a detached window starts smaller and its
  // first rows can land there when it grows to its size.
  std::vector<std::string> Screen(const std::string& name) { return Read(name).rows; }

  // The exit code of the window's command once it has ended; -1 while it runs.
  int ExitCode(const std::string& name) { return Read(name).exit_code; }

 private:
  static constexpr char kExitMark[] = "kiln exit code: ";

  struct Capture {
    std::vector<std::string> rows;
    int exit_code = -1;
  };

  Capture Read(const std::string& name) {
    std::string out;
    auto code = RunCommand(
        "/usr/bin/tmux", {"-S", socket_, "capture-pane", "-p", "-S", "-", "-t", "t:" + name}, &out);
    REQUIRE(code.ok());
    Capture capture;
    capture.rows = absl::StrSplit(out, '\n');
    std::vector<std::string>& rows = capture.rows;
    // tmux's own note under a command that has ended (remain-on-exit), and blank rows.
    while (!rows.empty() && (absl::StripTrailingAsciiWhitespace(rows.back()).empty() ||
                             absl::StartsWith(rows.back(), "Pane is dead"))) {
      rows.pop_back();
    }
    if (!rows.empty() && absl::StartsWith(rows.back(), kExitMark)) {
      if (!absl::SimpleAtoi(absl::StripPrefix(rows.back(), kExitMark), &capture.exit_code)) {
        capture.exit_code = -1;
      }
      rows.pop_back();
    }
    return capture;
  }

  testutil::TempDir dir_;
  std::string socket_;
  bool started_ = false;
};

// The last row starts with the deployment id and names the state and the running step.
bool ShowsProgress(const std::vector<std::string>& screen, const std::string& id) {
  return !screen.empty() && absl::StartsWith(screen.back(), id + "  BUILDING ") &&
         absl::StrContains(screen.back(), " | build ");
}

TEST_CASE("A person following a build sees its log, a live progress line and the outcome",
          "[platform][terminal]") {
  fakes::InProcessPlatform p;
  const std::string address = p.ServeBuildService();
  p.agent.SetRevision("main", {Hex40("commit-1"), Hex40("tree-1")});
  pb::CreateProjectRequest create;
  *create.mutable_config() = p.Config();
  REQUIRE(p.api->CreateProject(create).ok());
  p.agent.HoldBuilds(true);
  const std::string id = p.Push("main", Hex40("commit-1"));
  REQUIRE(testutil::WaitFor([&] { return p.agent.building(); }, fakes::kPlatformWait));

  Terminal terminal;
  const std::vector<std::string> base = {"--platform-address", address, "--token", "unused-here"};
  std::vector<std::string> follow = base;
  follow.insert(follow.end(), {"deploy", "logs", "--id", id, "--follow"});
  terminal.Run("follow", follow);

  // While the build is held: the log so far (wake, fetch) above, the progress line on the last
  // row...
  std::vector<std::string> screen;
  {
    const bool shown = testutil::WaitFor(
        [&] {
          screen = terminal.Screen("follow");
          return ShowsProgress(screen, id) && screen.size() >= 2;
        },
        kScreenWait);
    INFO(absl::StrJoin(screen, "\n"));
    REQUIRE(shown);
  }
  const std::string first = screen.back();
  // ...and it is live: the seconds move on while the build prints nothing.
  {
    const bool shown = testutil::WaitFor(
        [&] {
          screen = terminal.Screen("follow");
          return ShowsProgress(screen, id) && screen.back() != first;
        },
        kScreenWait);
    INFO(absl::StrJoin(screen, "\n"));
    REQUIRE(shown);
  }
  CHECK(terminal.ExitCode("follow") == -1);

  // The build ends: the progress line is gone, the outcome is the last row, exit 0.
  p.agent.HoldBuilds(false);
  // (tmux may mark the pane dead before it has drawn the last bytes: wait for both.)
  {
    const bool shown = testutil::WaitFor(
        [&] {
          screen = terminal.Screen("follow");
          return terminal.ExitCode("follow") >= 0 && !screen.empty() &&
                 absl::StartsWith(screen.back(), "Deployment ");
        },
        kScreenWait);
    INFO(absl::StrJoin(screen, "\n"));
    REQUIRE(shown);
  }
  CHECK(terminal.ExitCode("follow") == 0);
  CHECK(absl::StartsWith(screen.back(), "Deployment " + id + " SUCCEEDED in "));
  for (const std::string& row : screen) {
    INFO(row);
    CHECK_FALSE(absl::StartsWith(row, id + "  "));  // No progress line left behind.
  }

  // A table: each column starts at the same place on every row.
  std::vector<std::string> list = base;
  list.insert(list.end(), {"deploy", "list", "--project", "web"});
  terminal.Run("list", list);
  {
    const bool shown = testutil::WaitFor(
        [&] {
          screen = terminal.Screen("list");
          return terminal.ExitCode("list") >= 0 && screen.size() >= 2;
        },
        kScreenWait);
    INFO(absl::StrJoin(screen, "\n"));
    REQUIRE(shown);
  }
  CHECK(terminal.ExitCode("list") == 0);
  INFO(absl::StrJoin(screen, "\n"));
  REQUIRE(screen.size() == 2);
  CHECK(absl::StartsWith(screen[0], "ID "));
  CHECK(absl::StartsWith(screen[1], id + " "));
  for (const char* column : {"BRANCH", "COMMIT", "STATE"}) {
    const size_t at = screen[0].find(column);
    REQUIRE(at != std::string::npos);
    CHECK(screen[1][at - 1] == ' ');
    CHECK(screen[1][at] != ' ');
  }
  CHECK(screen[1].substr(screen[0].find("STATE"), 9) == "SUCCEEDED");
}

}  // namespace
}  // namespace kiln::worker
