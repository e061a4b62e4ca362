#include "common/metrics.h"

#include <catch2/catch.hpp>

#include "tests/testutil/http.h"

namespace kiln {
namespace {

TEST_CASE("The metrics server serves the registry on /metrics") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& family = prometheus::BuildCounter()
                     .Name("kiln_test_events_total")
                     .Help("Events seen by the test")
                     .Register(*registry);
  family.Add({{"kind", "a"}}).Increment(3);

  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  REQUIRE(server.ok());
  REQUIRE((*server)->port() > 0);
  auto body = testutil::HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  REQUIRE(body.ok());
  REQUIRE(body->find("kiln_test_events_total{kind=\"a\"} 3") != std::string::npos);

  // A second server on the same port fails with a clear error instead of throwing.
  auto clash = MetricsServer::Start("127.0.0.1:" + std::to_string((*server)->port()), registry);
  REQUIRE(clash.status().code() == absl::StatusCode::kUnavailable);
  REQUIRE(std::string(clash.status().message()).find("cannot serve metrics") == 0);
}

}  // namespace
}  // namespace kiln
