#include "builder-agent/command/command.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testutil/process.h"

namespace kiln::builder {
namespace {

CommandSpec Shell(std::string script) {
  CommandSpec spec;
  spec.name = "test step";
  spec.argv = {"/bin/sh", "-c", std::move(script)};
  return spec;
}

struct Collected {
  std::vector<std::string> lines;
  LineSink Sink() {
    return [this](std::string_view line) { lines.emplace_back(line); };
  }
  std::string Joined() const { return absl::StrJoin(lines, "\n"); }
};

int CountOpenFds() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  while (::readdir(dir)) ++count;
  ::closedir(dir);
  return count;
}

bool GroupGone(pid_t pgid) { return ::kill(-pgid, 0) != 0 && errno == ESRCH; }

TEST_CASE("lines stream in order, stdout and stderr merged") {
  Collected out;
  auto result = RunCommand(Shell("for i in 1 2 3; do echo out$i; echo err$i >&2; done; "
                                 "printf 'no newline'"),
                           out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 0);
  CHECK(out.lines ==
        std::vector<std::string>{"out1", "err1", "out2", "err2", "out3", "err3", "no newline"});
  CHECK(absl::StrContains(result->output_tail, "err3\nno newline"));
}

TEST_CASE("non-zero exit is a result, not an error") {
  Collected out;
  auto result = RunCommand(Shell("echo failing; exit 3"), out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 3);
  auto killed = RunCommand(Shell("kill -9 $$"), out.Sink(), {});
  REQUIRE(killed.ok());
  CHECK(killed->exit_code == 128 + SIGKILL);
}

TEST_CASE("a missing program is NotFound, env, stdin and working dir are passed") {
  Collected out;
  CommandSpec missing;
  missing.argv = {"kiln-no-such-program"};
  CHECK(absl::IsNotFound(RunCommand(missing, out.Sink(), {}).status()));

  testutil::TempDir dir;
  CommandSpec spec = Shell("pwd; echo $KILN_TEST_VAR; cat");
  spec.env = {{"KILN_TEST_VAR", "value-1"}};
  spec.working_dir = dir.path();
  spec.stdin_data = "from stdin\n";
  auto result = RunCommand(spec, out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(out.lines == std::vector<std::string>{dir.path(), "value-1", "from stdin"});
}

TEST_CASE("long lines are cut with a marker and the rest of the line dropped") {
  Collected out;
  // 20000 'a's, then a normal line.
  auto result =
      RunCommand(Shell("head -c 20000 /dev/zero | tr '\\0' a; echo; echo next"), out.Sink(), {});
  REQUIRE(result.ok());
  REQUIRE(out.lines.size() == 2);
  CHECK(out.lines[0] == std::string(kMaxLineBytes, 'a') + std::string(kTruncatedMarker));
  CHECK(out.lines[1] == "next");
}

TEST_CASE("secrets are redacted, also when split across reads and at the line cap") {
  Collected out;
  const std::string secret = "s3cr3t-T0KEN-value";
  // The secret is written in two halves with a pause between, so it arrives in two reads.
  CommandSpec spec = Shell(
      "printf 'token=s3cr3t-T0'; sleep 0.1; printf 'KEN-value end\\n'; "
      "echo again s3cr3t-T0KEN-value; "
      // A secret straddling the 8 KiB cap must not leave a piece behind.
      "head -c 8180 /dev/zero | tr '\\0' b; echo s3cr3t-T0KEN-value tail; "
      "echo multi line-one-of-key; exit 4");
  spec.secrets = {secret, "-----BEGIN\nline-one-of-key\n-----END"};
  auto result = RunCommand(spec, out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 4);
  REQUIRE(out.lines.size() == 4);
  CHECK(out.lines[0] == "token=*** end");
  CHECK(out.lines[1] == "again ***");
  CHECK(absl::StartsWith(out.lines[2], std::string(8180, 'b') + "***"));
  CHECK(out.lines[3] == "multi ***");
  for (const auto& line : out.lines) {
    CHECK_FALSE(absl::StrContains(line, "s3cr3t"));
    CHECK_FALSE(absl::StrContains(line, "T0KEN"));
  }
  CHECK_FALSE(absl::StrContains(result->output_tail, "s3cr3t"));
}

TEST_CASE("error messages are redacted") {
  Collected out;
  CommandSpec spec;
  spec.name = "fetch with hunter2pass";
  spec.argv = {"kiln-missing-hunter2pass"};
  spec.secrets = {"hunter2pass"};
  auto result = RunCommand(spec, out.Sink(), {});
  REQUIRE_FALSE(result.ok());
  CHECK_FALSE(absl::StrContains(result.status().message(), "hunter2pass"));
  CHECK(absl::StrContains(result.status().message(), "***"));
  CHECK(Redact("a hunter2pass b", {"hunter2pass", ""}) == "a *** b");
}

TEST_CASE("a private step's output never reaches the sink") {
  Collected out;
  CommandSpec ok = Shell("echo private output; echo more >&2");
  ok.name = "deploy key";
  ok.is_private = true;
  auto result = RunCommand(ok, out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->output_tail.empty());
  CHECK(result->output_lines == 2);
  CHECK(out.lines == std::vector<std::string>{"[private step: deploy key] ok"});

  out.lines.clear();
  CommandSpec bad = Shell("echo private output; exit 7");
  bad.name = "deploy key";
  bad.is_private = true;
  result = RunCommand(bad, out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 7);
  CHECK(out.lines == std::vector<std::string>{"[private step: deploy key] failed (exit 7)"});
}

// Reads the pgid the step reports on its first line.
pid_t FirstLinePid(const std::vector<std::string>& lines) {
  return lines.empty() ? 0 : static_cast<pid_t>(std::stol(lines[0]));
}

TEST_CASE("cancel kills the whole process group, grandchildren too, within 2 s") {
  std::atomic<pid_t> pgid{0};
  std::vector<std::string> lines;
  CommandSpec spec = Shell("echo $$; sleep 100 & sleep 100");
  auto sink = [&](std::string_view line) {
    lines.emplace_back(line);
    if (lines.size() == 1) pgid = static_cast<pid_t>(std::stol(std::string(line)));
  };
  absl::Time cancel_at = absl::InfiniteFuture();
  auto cancelled = [&] {
    // Cancel once the step is up and its background child has had time to start.
    if (pgid != 0 && cancel_at == absl::InfiniteFuture()) {
      cancel_at = absl::Now() + absl::Milliseconds(200);
    }
    return absl::Now() >= cancel_at;
  };
  absl::Time start = absl::Now();
  auto result = RunCommand(spec, sink, cancelled);
  absl::Duration took = absl::Now() - cancel_at;
  CHECK(absl::IsCancelled(result.status()));
  REQUIRE(pgid != 0);
  CHECK(FirstLinePid(lines) == pgid);
  CHECK(GroupGone(pgid));
  CHECK(took < absl::Seconds(2));
  CHECK(absl::Now() - start < absl::Seconds(3));
}

TEST_CASE("a step that ignores SIGTERM is killed after the grace") {
  std::atomic<pid_t> pgid{0};
  CommandSpec spec = Shell("trap '' TERM; echo $$; sleep 100 & sleep 100");
  spec.kill_grace = absl::Milliseconds(300);
  spec.timeout = absl::Milliseconds(400);
  absl::Time start = absl::Now();
  auto result = RunCommand(
      spec, [&](std::string_view line) { pgid = static_cast<pid_t>(std::stol(std::string(line))); },
      {});
  CHECK(absl::IsDeadlineExceeded(result.status()));
  REQUIRE(pgid != 0);
  CHECK(GroupGone(pgid));
  CHECK(absl::Now() - start < absl::Seconds(2));
}

TEST_CASE("processes a step leaves in its group end with it") {
  std::atomic<pid_t> pgid{0};
  auto result = RunCommand(
      Shell("echo $$; sleep 100 >/dev/null 2>&1 & exit 0"),
      [&](std::string_view line) { pgid = static_cast<pid_t>(std::stol(std::string(line))); }, {});
  REQUIRE(result.ok());
  REQUIRE(pgid != 0);
  CHECK(GroupGone(pgid));
}

TEST_CASE("a step dies with the agent that started it") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  pid_t agent = ::fork();
  REQUIRE(agent >= 0);
  if (agent == 0) {  // A stand-in for the agent: runs a long step, reports its group.
    ::close(pipe_fds[0]);
    CommandSpec spec = Shell("echo $$; sleep 100 & sleep 100");
    (void)RunCommand(spec,
                     [&](std::string_view line) {
                       std::string l(line);
                       (void)!::write(pipe_fds[1], l.data(), l.size());
                       ::close(pipe_fds[1]);
                     },
                     {});
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  char buf[32] = {};
  ssize_t n = ::read(pipe_fds[0], buf, sizeof(buf) - 1);
  ::close(pipe_fds[0]);
  REQUIRE(n > 0);
  pid_t pgid = static_cast<pid_t>(std::stol(std::string(buf, static_cast<size_t>(n))));
  ::kill(agent, SIGKILL);
  int status = 0;
  ::waitpid(agent, &status, 0);
  // Killed at once, but with the shim gone it is init that reaps them (slowly on some hosts).
  CHECK(testutil::WaitFor([&] { return GroupGone(pgid); }, absl::Seconds(15)));
}

TEST_CASE("no file descriptors leak") {
  int before = CountOpenFds();
  Collected out;
  for (int i = 0; i < 20; ++i) {
    CommandSpec spec = Shell("echo hi; ls /proc/self/fd | wc -l");
    spec.stdin_data = "x";
    REQUIRE(RunCommand(spec, out.Sink(), {}).ok());
  }
  CHECK(CountOpenFds() == before);
  // The step sees only stdin, stdout, stderr (and the fd ls opens to list them).
  CHECK(out.lines.back() == "4");
}

TEST_CASE("a step that closes its stdin unread ends normally, the rest of its input dropped") {
  // More than a pipe holds: the writes go on after the step has exited, and get EPIPE (with
  // SIGPIPE, which this test process does not ignore, it would end the test).
  Collected out;
  CommandSpec spec = Shell("exec 0<&-; echo closed");
  spec.stdin_data = std::string(kMaxStdinBytes, 'x');
  auto result = RunCommand(spec, out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 0);
  CHECK(out.lines == std::vector<std::string>{"closed"});
}

TEST_CASE("an isolated step runs as PID 1 of its own namespace with its bind mounts") {
  if (!CanIsolate()) {
    WARN("skipped: this process may not create PID and mount namespaces (needs root)");
    return;
  }
  testutil::TempDir dir;
  std::string source = dir.path() + "/source";
  std::string target = dir.path() + "/target";
  REQUIRE(::mkdir(source.c_str(), 0700) == 0);
  std::ofstream(source + "/marker") << "bound\n";
  Collected out;
  CommandSpec spec = Shell(absl::StrCat("echo $$; cat ", target, "/marker; sleep 100 & echo up"));
  spec.isolate = true;
  spec.bind_mounts = {{source, target}};
  auto result = RunCommand(spec, out.Sink(), {});
  REQUIRE(result.ok());
  CHECK(result->exit_code == 0);
  CHECK(out.lines == std::vector<std::string>{"1", "bound", "up"});
  // The bind mount was the step's alone.
  CHECK(::access((target + "/marker").c_str(), F_OK) != 0);
}

}  // namespace
}  // namespace kiln::builder
