// ValidateProjectId, and the process provider's spawning and /proc reading with /bin/sh as the
// child (the provider itself, with the real agent, is tests/integration/process_machines_test).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "worker/machines/agent_process.h"
#include "worker/machines/machine_provider.h"
#include "worker/machines/microvm_provider.h"

namespace kiln::worker {
namespace {

TEST_CASE("ValidateProjectId accepts up to 63 lowercase letters and digits and inner dashes",
          "[machines]") {
  for (const char* good : {"a", "web", "0day", "my-app-2", "a-"}) {
    INFO(good);
    REQUIRE(ValidateProjectId(good).ok());
  }
  REQUIRE(ValidateProjectId(std::string(63, 'a')).ok());
  for (const std::string& bad :
       {std::string(), std::string(64, 'a'), std::string("-web"), std::string("Web"),
        std::string("web_app"), std::string("../x"), std::string("a/b"), std::string("a b"),
        std::string("a\nb"), std::string(".")}) {
    INFO(bad);
    REQUIRE(absl::IsInvalidArgument(ValidateProjectId(bad)));
  }
}

std::string TempPath(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  return absl::StrCat(base ? base : "/tmp", "/kiln-machines-", ::getpid(), "-", name);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits (poll on the pidfd, with a deadline) until the process exits, then reaps it.
int WaitExit(int pidfd) {
  pollfd fd{pidfd, POLLIN, 0};
  REQUIRE(::poll(&fd, 1, 20000) == 1);
  absl::StatusOr<int> code = internal::ReapPidfd(pidfd);
  REQUIRE(code.ok());
  return *code;
}

TEST_CASE(
    "SpawnDetached runs the child in its own session with stdin /dev/null and the given env only",
    "[machines]") {
  const std::string out = TempPath("spawn.log");
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  // A descriptor the worker leaves inheritable must not reach the child either.
  int leaked = ::open("/dev/null", O_RDONLY);
  REQUIRE(leaked >= 0);
  internal::SpawnSpec spec;
  spec.binary = "/bin/sh";
  spec.argv = {"sh", "-c",
               absl::StrCat("echo sid=$(cut -d' ' -f6 /proc/$$/stat) pid=$$; echo env=$SECRET; ",
                            "echo home=${HOME:-none}; read line && echo stdin=$line; ",
                            "test -e /proc/$$/fd/", leaked, " && echo leaked; exit 7")};
  spec.env = {"SECRET=s3", "PATH=/usr/bin:/bin"};
  spec.output_fd = fd;
  spec.new_mount_namespace = true;
  absl::StatusOr<internal::Spawned> spawned = internal::SpawnDetached(spec);
  ::close(fd);
  ::close(leaked);
  REQUIRE(spawned.ok());
  REQUIRE(spawned->exec_errno == 0);
  REQUIRE(spawned->pidfd >= 0);
  REQUIRE(spawned->start_ticks > 0);
  REQUIRE(WaitExit(spawned->pidfd) == 7);
  ::close(spawned->pidfd);
  std::string output = Slurp(out);
  INFO(output);
  // Its own session: the session id is its own pid.
  REQUIRE(absl::StrContains(output, absl::StrCat("sid=", spawned->pid, " pid=", spawned->pid)));
  REQUIRE(absl::StrContains(output, "env=s3"));
  REQUIRE(absl::StrContains(output, "home=none"));
  REQUIRE_FALSE(absl::StrContains(output, "stdin="));
  REQUIRE_FALSE(absl::StrContains(output, "leaked"));
  std::remove(out.c_str());
}

TEST_CASE("SpawnDetached reports a failed exec and reaps the child", "[machines]") {
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  internal::SpawnSpec spec;
  spec.binary = "/nonexistent/kiln-builder-agent";
  spec.argv = {spec.binary};
  spec.output_fd = fd;
  absl::StatusOr<internal::Spawned> spawned = internal::SpawnDetached(spec);
  ::close(fd);
  REQUIRE(spawned.ok());
  REQUIRE(spawned->exec_errno == ENOENT);
  REQUIRE(spawned->pidfd == -1);
  // Reaped already: no such process (not even a zombie) remains.
  REQUIRE(absl::IsNotFound(internal::ReadProcStat(spawned->pid).status()));
}

TEST_CASE("ReadProcStat and ReadProcCmdline describe a process and signals go by pidfd",
          "[machines]") {
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  internal::SpawnSpec spec;
  spec.binary = "/bin/sleep";
  spec.argv = {"sleep", "60"};
  spec.output_fd = fd;
  absl::StatusOr<internal::Spawned> spawned = internal::SpawnDetached(spec);
  ::close(fd);
  REQUIRE(spawned.ok());
  REQUIRE(spawned->exec_errno == 0);
  absl::StatusOr<internal::ProcStat> stat = internal::ReadProcStat(spawned->pid);
  REQUIRE(stat.ok());
  REQUIRE(stat->start_ticks == spawned->start_ticks);
  absl::StatusOr<std::vector<std::string>> argv = internal::ReadProcCmdline(spawned->pid);
  REQUIRE(argv.ok());
  REQUIRE(*argv == spec.argv);
  // Running: nothing to reap yet.
  REQUIRE(absl::IsUnavailable(internal::ReapPidfd(spawned->pidfd).status()));
  REQUIRE(internal::SignalPidfd(spawned->pidfd, SIGTERM).ok());
  REQUIRE(WaitExit(spawned->pidfd) == 128 + SIGTERM);
  REQUIRE(absl::IsNotFound(internal::SignalPidfd(spawned->pidfd, SIGTERM)));
  ::close(spawned->pidfd);
  REQUIRE(absl::IsNotFound(internal::ReadProcStat(spawned->pid).status()));
}

TEST_CASE("The agents' secrets file becomes KILN_SECRET_ entries and a bad line is refused",
          "[machines]") {
  char path[] = "/tmp/kiln-secrets-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << "# comment\n\nGIT=tok=en\nDB_PASSWORD=hunter2  \n";
  auto entries = ReadAgentSecrets(path);
  REQUIRE(entries.ok());
  REQUIRE(*entries ==
          std::vector<std::string>{"KILN_SECRET_GIT=tok=en", "KILN_SECRET_DB_PASSWORD=hunter2"});
  std::ofstream(path) << "GIT=x\nlowercase=hunter2\n";
  auto bad = ReadAgentSecrets(path);
  REQUIRE(absl::IsInvalidArgument(bad.status()));
  REQUIRE(absl::StrContains(bad.status().message(), "line 2"));
  REQUIRE_FALSE(absl::StrContains(bad.status().message(), "hunter2"));  // Never the value.
  ::unlink(path);
  REQUIRE(absl::IsFailedPrecondition(ReadAgentSecrets(path).status()));
}

}  // namespace
}  // namespace kiln::worker
