#include "common/config.h"

#include <cstdlib>
#include <vector>

#include <catch2/catch.hpp>

namespace kiln {
namespace {

int Parse(CLI::App& app, std::vector<std::string> args) {
  std::vector<char*> argv;
  static std::string name = "prog";
  argv.push_back(name.data());
  for (auto& a : args) argv.push_back(a.data());
  return ParseFlags(app, static_cast<int>(argv.size()), argv.data());
}

TEST_CASE("host:port parsing names the setting and the bad value") {
  REQUIRE(ParseHostPort("127.0.0.1:7233", "--listen")->port == 7233);
  REQUIRE(ParseHostPort("[::1]:80", "--listen")->host == "::1");
  REQUIRE(ParseHostPort("[::1]:80", "--listen")->ToString() == "[::1]:80");
  auto bad = ParseHostPort("127.0.0.1:99999", "--listen");
  REQUIRE(bad.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(bad.status().message() == "--listen: '127.0.0.1:99999' has a port outside 0..65535");
  REQUIRE_FALSE(ParseHostPort("localhost", "--listen").ok());
  REQUIRE_FALSE(ParseHostPort(":80", "--listen").ok());
  REQUIRE_FALSE(ParseHostPort("h:8x", "--listen").ok());
  REQUIRE_FALSE(ParseHostPort("::1:80", "--listen").ok());
}

TEST_CASE("Flags win over KILN_* environment, which wins over defaults") {
  ::setenv("KILN_LOG_LEVEL", "debug", 1);
  {
    CLI::App app;
    CommonFlags flags;
    AddCommonFlags(app, &flags);
    REQUIRE(Parse(app, {}) == -1);
    REQUIRE(flags.log_level == "debug");
    REQUIRE(flags.log_format == "text");
  }
  {
    CLI::App app;
    CommonFlags flags;
    AddCommonFlags(app, &flags);
    REQUIRE(Parse(app, {"--log-level", "error"}) == -1);
    REQUIRE(flags.log_level == "error");
  }
  ::unsetenv("KILN_LOG_LEVEL");
}

TEST_CASE("A bad value is a usage error, --help and --version exit 0") {
  {
    CLI::App app;
    CommonFlags flags;
    AddCommonFlags(app, &flags);
    REQUIRE(Parse(app, {"--log-format", "xml"}) == 2);
  }
  {
    CLI::App app;
    CommonFlags flags;
    AddCommonFlags(app, &flags);
    REQUIRE(Parse(app, {"--version"}) == 0);
  }
  {
    CLI::App app;
    CommonFlags flags;
    AddCommonFlags(app, &flags);
    std::string listen;
    app.add_option("--listen", listen)->check(HostPortValidator());
    REQUIRE(Parse(app, {"--listen", "nope"}) == 2);
    REQUIRE(Parse(app, {"--listen", "127.0.0.1:1"}) == -1);
  }
}

}  // namespace
}  // namespace kiln
