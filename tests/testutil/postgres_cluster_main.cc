// kiln-test-postgres start|stop: the PostgreSQL cluster a ctest run's `postgres` tests share
// (tests/testutil/postgres.h). ctest runs `start` as the fixture `postgres_cluster_start` before
// the first of them and `stop` as `postgres_cluster_stop` after the last.
#include <iostream>
#include <string>

#include "tests/testutil/postgres.h"

int main(int argc, char** argv) {
  const std::string command = argc == 2 ? argv[1] : "";
  if (command != "start" && command != "stop") {
    std::cerr << "usage: kiln-test-postgres start|stop" << std::endl;
    return 2;
  }
  absl::Status done = command == "start"
                          ? kiln::testutil::StartSharedCluster(KILN_SHARED_POSTGRES_STATE)
                          : kiln::testutil::StopSharedCluster(KILN_SHARED_POSTGRES_STATE);
  if (!done.ok()) {
    std::cerr << "kiln-test-postgres " << command << ": " << done << std::endl;
    return 1;
  }
  return 0;
}
