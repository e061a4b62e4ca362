// testutil::Process: a started process does not outlive a test that crashes.
#include "tests/testutil/process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::testutil {
namespace {

// Whether `pid` still runs: a process that is gone, or a zombie no one has reaped yet, does
// not.
bool Running(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state)) return false;
  return state != "Z" && state != "X";
}

TEST_CASE("A process a test started is killed when the test dies without cleaning up") {
  TempDir dir;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  // The crashing test: it starts a long sleep, reports its pid, and is killed before any
  // destructor could stop the sleep.
  const pid_t test = ::fork();
  REQUIRE(test >= 0);
  if (test == 0) {
    ::close(fds[0]);
    auto sleeper = Process::Start("/bin/sleep", {"600"}, dir.path() + "/sleep.log");
    const pid_t pid = sleeper.ok() ? (*sleeper)->pid() : -1;
    if (::write(fds[1], &pid, sizeof pid) != sizeof pid) ::_exit(1);
    ::raise(SIGKILL);
  }
  ::close(fds[1]);
  pid_t sleeper = -1;
  REQUIRE(::read(fds[0], &sleeper, sizeof sleeper) == sizeof sleeper);
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(test, &status, 0) == test);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(sleeper > 0);

  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Running(sleeper) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  const bool still_running = Running(sleeper);
  if (still_running) ::kill(sleeper, SIGKILL);  // do not leave it behind when the check fails
  REQUIRE_FALSE(still_running);
}

}  // namespace
}  // namespace kiln::testutil
