// RevokedTokens over the in-memory store on a fake clock: revocations are found again after a
// reload, and each record goes once its token has expired (at a reload, or at the next Revoke).
#include "orchestrator/rpc/revoked_tokens.h"

#include <catch2/catch.hpp>

#include "orchestrator/persistence/keys.h"
#include "orchestrator/persistence/memory_store.h"

namespace kiln::orchestrator {
namespace {

size_t StoredRecords(Store& store) {
  size_t count = 0;
  const std::string prefix = keys::RevokedTokenPrefix();
  REQUIRE(store
              .Scan(Table::kMeta, prefix, keys::PrefixEnd(prefix), 0,
                    [&](std::string_view, std::string_view) {
                      ++count;
                      return true;
                    })
              .ok());
  return count;
}

TEST_CASE("Revoked tokens survive a reload and go once their token has expired") {
  MemoryStore store;
  FakeClock clock;
  auto revoked = RevokedTokens::Load(&store, &clock);
  REQUIRE(revoked.ok());
  CHECK(!(*revoked)->Contains("a"));
  CHECK((*revoked)->Revoke("a", clock.Now() + absl::Hours(1)).value() == false);
  CHECK((*revoked)->Revoke("b", clock.Now() + absl::Hours(3)).value() == false);
  CHECK((*revoked)->Revoke("a", clock.Now() + absl::Hours(1)).value() == true);  // Again.
  CHECK((*revoked)->Contains("a"));
  CHECK(!(*revoked)->Contains("c"));

  // A reload (a restart) finds both.
  auto reloaded = RevokedTokens::Load(&store, &clock);
  REQUIRE(reloaded.ok());
  CHECK((*reloaded)->Contains("a"));
  CHECK((*reloaded)->Contains("b"));
  CHECK(StoredRecords(store) == 2);

  // Past a's expiry, the next revocation drops a's record.
  clock.Advance(absl::Hours(2));
  CHECK((*reloaded)->Revoke("c", clock.Now() + absl::Hours(5)).value() == false);
  CHECK(!(*reloaded)->Contains("a"));
  CHECK((*reloaded)->size() == 2);
  CHECK(StoredRecords(store) == 2);

  // Past b's expiry, a reload drops b's.
  clock.Advance(absl::Hours(2));
  auto later = RevokedTokens::Load(&store, &clock);
  REQUIRE(later.ok());
  CHECK(!(*later)->Contains("b"));
  CHECK((*later)->Contains("c"));
  CHECK(StoredRecords(store) == 1);
}

TEST_CASE("A corrupt revocation record is data loss") {
  MemoryStore store;
  FakeClock clock;
  WriteBatch batch;
  batch.Put(Table::kMeta, keys::RevokedToken("x"), "\xff\xff not a record");
  REQUIRE(store.Commit(batch).ok());
  CHECK(absl::IsDataLoss(RevokedTokens::Load(&store, &clock).status()));
}

}  // namespace
}  // namespace kiln::orchestrator
