#include "builder-agent/podman/output_parse.h"

#include <catch2/catch.hpp>

namespace kiln::builder {
namespace {

TEST_CASE("build output: steps of the Containerfile and those from the layer cache") {
  BuildOutputParser p;
  for (const char* line : {
           "STEP 1/6: FROM localhost/kiln-busybox:latest",
           "STEP 2/6: COPY deps.lock /app/deps.lock",
           "--> Using cache 51ca9cccc4dba9688469d687f4bbf6525a45bc17c2add579ddab8b47dd2673a9",
           "--> 51ca9cccc4d", "STEP 3/6: RUN mkdir -p /app/deps",
           "--> Using cache 95a4ebb99eacd7915aeea51e2e07726f5a116a824580a10009b514b45fc5d695",
           "STEP 4/6: COPY src/ /app/src/", "--> 2e147759e8a",
           "STEP 5/6: CMD [\"cat\", \"/app/src/main.txt\"]", "--> 3bd3e5f1a2c",
           "STEP 6/6: LABEL kiln.project=\"app\" kiln.build=\"b2\" kiln.commit=\"c2\"",
           "--> Using cache 0000000000000000000000000000000000000000000000000000000000000000",
           "COMMIT 127.0.0.1:5000/kiln/app:c2",
           "STEP 4/6: COPY src/ /app/src/",  // A repeated line does not count twice.
       }) {
    p.Feed(line);
  }
  CHECK(p.steps_total() == 4);
  CHECK(p.steps_reused() == 2);
}

TEST_CASE("push output: uploaded and reused blobs from podman's debug log") {
  PushOutputParser p;
  CHECK(p.Feed("Getting image source signatures") == "Getting image source signatures");
  CHECK(p.Feed("Copying blob sha256:1dc2") == "Copying blob sha256:1dc2");
  CHECK(p.Feed("time=\"2026-11-27T17:28:24Z\" level=debug msg=\"Skipping blob sha256:bdbe38 "
               "(already present):\"")
            .empty());
  CHECK(p.Feed("time=\"2026-11-27T17:28:24Z\" level=debug msg=\"Skipping blob sha256:334fa8 "
               "(already present):\"")
            .empty());
  CHECK(p.Feed("time=\"2026-11-27T17:28:24Z\" level=debug msg=\"Upload of layer sha256:e84e9e "
               "complete\"")
            .empty());
  CHECK(p.Feed("Copying config sha256:e4c7b6") == "Copying config sha256:e4c7b6");
  CHECK(p.Feed("time=\"2026-11-27T17:28:24Z\" level=debug msg=\"Upload of layer sha256:e4c7b6 "
               "complete\"")
            .empty());
  CHECK(p.Feed("time=\"2026-11-27T17:28:24Z\" level=warning msg=\"slow registry\"") ==
        "slow registry");
  CHECK(p.blobs_pushed() == 1);
  CHECK(p.blobs_reused() == 2);
  CHECK(p.config_pushed());
}

}  // namespace
}  // namespace kiln::builder
