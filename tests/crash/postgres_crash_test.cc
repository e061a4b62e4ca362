// The kill -9 workload (kill_nine_workload.h) on an orchestrator whose store is PostgreSQL
// (--store postgres://…, a cluster of the test's own): SIGKILLed twice mid-run, nothing lost,
// nothing duplicated.
#include <libpq-fe.h>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "tests/crash/kill_nine_workload.h"
#include "tests/testutil/postgres.h"

namespace kiln {
namespace {

TEST_CASE("kill -9 mid-run on PostgreSQL loses nothing and duplicates nothing") {
  auto cluster = testutil::PostgresCluster::Start();
  if (absl::IsFailedPrecondition(cluster.status())) {
    if (testutil::PostgresRequired()) FAIL("PostgreSQL required: " << cluster.status().message());
    WARN("skipped: PostgreSQL cannot start here: " << cluster.status().message());
    return;
  }
  INFO(cluster.status().ToString());
  REQUIRE(cluster.ok());
  RunKillNineWorkload(
      {"--store", absl::StrCat("postgres://kiln@127.0.0.1:", (*cluster)->port(), "/postgres")});

  // The histories the workload read back came from PostgreSQL.
  PGconn* conn = PQconnectdb((*cluster)->ConnInfo().c_str());
  PGresult* result = PQexec(conn, "SELECT count(*) FROM kiln_history");
  INFO(PQerrorMessage(conn));
  REQUIRE(PQresultStatus(result) == PGRES_TUPLES_OK);
  CHECK(std::stoi(PQgetvalue(result, 0, 0)) > 200);
  PQclear(result);
  PQfinish(conn);
}

}  // namespace
}  // namespace kiln
