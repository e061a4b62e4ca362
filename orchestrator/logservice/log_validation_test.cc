// LogService's request checks: the run reference, the stream name, the chunk size, the
// sequence and the offset, each error naming its field and limit.
#include "orchestrator/logservice/log_validation.h"

#include <string>

#include <catch2/catch.hpp>

#include "orchestrator/logs/log_limits.h"

namespace kiln::orchestrator {
namespace {

using namespace std::string_literals;

TEST_CASE("Log requests are validated before any work") {
  REQUIRE(ValidateStreamName("build").ok());
  REQUIRE(ValidateStreamName(std::string(200, 's')).ok());
  REQUIRE(std::string(ValidateStreamName("").message()) == "stream: must be set");
  REQUIRE(std::string(ValidateStreamName(std::string(201, 's')).message()) ==
          "stream: 201 bytes is over the limit of 200");
  REQUIRE(std::string(ValidateStreamName("a\0b"s).message()) ==
          "stream: must not contain NUL bytes");

  kiln::api::v1::AppendLogRequest append;
  append.set_stream("s");
  REQUIRE(std::string(ValidateAppendLog(append).message()) == "workflow_id: must be set");
  append.mutable_execution()->set_workflow_id("wf");
  REQUIRE(ValidateAppendLog(append).ok());
  append.set_sequence(-2);
  REQUIRE(ValidateAppendLog(append).code() == absl::StatusCode::kInvalidArgument);
  append.set_sequence(1);
  append.set_data(std::string(log_limits::kMaxChunkBytes + 1, 'x'));
  REQUIRE(std::string(ValidateAppendLog(append).message()) ==
          "data: 1048577 bytes is over the limit of 1048576 per append");

  kiln::api::v1::ReadLogRequest read;
  read.mutable_execution()->set_workflow_id("wf");
  read.set_stream("s");
  REQUIRE(ValidateReadLog(read).ok());
  read.set_from_offset(-1);
  REQUIRE(std::string(ValidateReadLog(read).message()) == "from_offset: -1 is negative");
}

}  // namespace
}  // namespace kiln::orchestrator
