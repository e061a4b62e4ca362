#include "builder-agent/args_from.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "tests/testutil/process.h"

namespace kiln::builder {
namespace {

TEST_CASE("args-from takes arguments and variables up to end", "[agent]") {
  auto parsed = ParseArgsFrom(
      "arg=--project\narg=web\nenv=KILN_TOKEN=kiln1.abc=def\narg=--idle-grace\narg=3\n\nend\n"
      "arg=--ignored\n");
  REQUIRE(parsed.ok());
  REQUIRE(parsed->args == std::vector<std::string>{"--project", "web", "--idle-grace", "3"});
  REQUIRE(parsed->env.size() == 1);
  REQUIRE(parsed->env[0].first == "KILN_TOKEN");
  REQUIRE(parsed->env[0].second == "kiln1.abc=def");
}

TEST_CASE("args-from refuses what it does not know and the loader's variables", "[agent]") {
  REQUIRE_FALSE(ParseArgsFrom("project=web\n").ok());
  REQUIRE_FALSE(ParseArgsFrom("env=LD_PRELOAD=/tmp/x.so\n").ok());
  REQUIRE_FALSE(ParseArgsFrom("env=1X=y\n").ok());
  REQUIRE_FALSE(ParseArgsFrom("env=NOVALUE\n").ok());
  REQUIRE_FALSE(ParseArgsFrom(std::string(kMaxArgsFromBytes + 1, 'a')).ok());
  std::string many;
  for (size_t i = 0; i <= kMaxArgsFromArgs; ++i) many += "arg=x\n";
  REQUIRE_FALSE(ParseArgsFrom(many).ok());
}

TEST_CASE("args-from waits on a pipe until its writer sends end", "[agent]") {
  testutil::TempDir dir;
  const std::string fifo = dir.path() + "/config";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  absl::StatusOr<ArgsFrom> read = absl::UnknownError("not read");
  std::thread reader([&] { read = ReadArgsFrom(fifo); });
  // The writer keeps the pipe open after `end`: the reader must not wait for its close.
  int fd = ::open(fifo.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  const std::string text = "arg=--project\narg=web\nend\n";
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  reader.join();
  ::close(fd);
  REQUIRE(read.ok());
  REQUIRE(read->args == std::vector<std::string>{"--project", "web"});
}

}  // namespace
}  // namespace kiln::builder
