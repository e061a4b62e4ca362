#include "common/logging.h"

#include <sstream>

#include <catch2/catch.hpp>

namespace kiln {
namespace {

const absl::Time kTime = absl::FromUnixMillis(1'700'000'000'123);

TEST_CASE("Text lines carry time, level, event and fields, quoting where needed") {
  std::ostringstream out;
  Logger logger(&out, LogFormat::kText, LogLevel::kInfo);
  std::string line = logger.Format(kTime, LogLevel::kInfo, "server.started",
                                   {{"listen", "127.0.0.1:7233"}, {"note", "two words"}, {"n", 3}});
  REQUIRE(line ==
          "2023-11-14T22:13:20.123Z INFO server.started listen=127.0.0.1:7233 "
          "note=\"two words\" n=3");
}

TEST_CASE("JSON lines are one object with typed fields and escaped strings") {
  std::ostringstream out;
  Logger logger(&out, LogFormat::kJson, LogLevel::kInfo);
  std::string line = logger.Format(kTime, LogLevel::kWarn, "x",
                                   {{"msg", "a \"quote\"\nnext"}, {"ok", true}, {"ms", 1.5}});
  REQUIRE(line ==
          "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"warn\",\"event\":\"x\","
          "\"msg\":\"a \\\"quote\\\"\\nnext\",\"ok\":true,\"ms\":1.5}");
}

TEST_CASE("Lines below the minimum level are dropped, each event is one line") {
  std::ostringstream out;
  Logger logger(&out, LogFormat::kText, LogLevel::kWarn);
  logger.Log(LogLevel::kInfo, "hidden", {});
  logger.Log(LogLevel::kError, "shown", {{"status", absl::NotFoundError("gone")}});
  std::string text = out.str();
  REQUIRE(text.find("hidden") == std::string::npos);
  REQUIRE(text.find("ERROR shown status=\"NOT_FOUND: gone\"") != std::string::npos);
  REQUIRE(std::count(text.begin(), text.end(), '\n') == 1);
}

}  // namespace
}  // namespace kiln
