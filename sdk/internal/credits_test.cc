// The activity worker's credit policy on the push stream (CreditsToLend): batches, never short.
#include <catch2/catch.hpp>

#include "sdk/internal/worker_stream.h"

namespace kiln::sdk::internal {
namespace {

// A worker of `slots` slots lending them as credits, as ActivityWorker::TopUpCredits does: a
// task takes a credit, an ended one frees its slot. Counts the grant messages.
struct Simulation {
  explicit Simulation(int slots) : target(slots), free(slots) { TopUp(); }

  void TopUp() {
    int grant = CreditsToLend(target, lent, free);
    if (grant == 0) return;
    free -= grant;
    lent += grant;
    ++grants;
  }
  void Take() {
    REQUIRE(lent > 0);  // the engine pushes only against a credit
    --lent;
    ++running;
    TopUp();
  }
  void End() {
    --running;
    ++free;
    TopUp();
  }

  const int target;
  int free;
  int lent = 0;
  int running = 0;
  int grants = 0;
};

TEST_CASE("A worker lends its free slots in batches, not one message per task") {
  Simulation worker(68);
  CHECK(worker.lent == 68);  // every slot at the start, in one message
  CHECK(worker.grants == 1);
  for (int i = 0; i < 30; ++i) worker.Take();
  worker.grants = 0;
  for (int i = 0; i < 1700; ++i) {
    worker.Take();
    worker.End();
    REQUIRE(worker.lent + worker.free + worker.running == 68);
    REQUIRE(worker.lent >= 68 / 4 - 1);  // the stream never runs short
  }
  // 1,700 tasks ended: a grant per 17 (a quarter of 68), not one each.
  CHECK(worker.grants <= 1700 / 17 + 1);
  CHECK(worker.grants >= 1700 / 17 - 1);
}

TEST_CASE("A worker nearly full lends each slot that frees at once") {
  Simulation worker(68);
  for (int i = 0; i < 66; ++i) worker.Take();
  // 66 running: 2 credits left, fewer than a batch.
  REQUIRE(worker.lent == 2);
  worker.grants = 0;
  worker.End();
  CHECK(worker.lent == 3);
  CHECK(worker.grants == 1);
  worker.End();
  CHECK(worker.lent == 4);
  CHECK(worker.grants == 2);
}

TEST_CASE("A worker takes back credits beyond a lowered target") {
  CHECK(CreditsToLend(/*target=*/4, /*lent=*/68, /*free=*/0) == -64);
  CHECK(CreditsToLend(4, 4, 10) == 0);
  CHECK(CreditsToLend(4, 3, 10) == 1);  // a batch of 1 at a target of 4
  CHECK(CreditsToLend(1, 0, 1) == 1);
  CHECK(CreditsToLend(1, 0, 0) == 0);  // nothing free: nothing to lend
}

}  // namespace
}  // namespace kiln::sdk::internal
