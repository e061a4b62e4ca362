#include "common/ids.h"

#include <set>

#include <catch2/catch.hpp>

namespace kiln {
namespace {

TEST_CASE("UUIDs are version 4, canonical, unique, and repeatable from a seed") {
  RandomIdGenerator a(42), b(42);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = a.NewUuid();
    REQUIRE(id == b.NewUuid());
    REQUIRE(id.size() == 36);
    REQUIRE(id[8] == '-');
    REQUIRE(id[14] == '4');
    REQUIRE((id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b'));
    seen.insert(id);
  }
  REQUIRE(seen.size() == 1000);
  RandomIdGenerator c(43);
  REQUIRE(c.NewUuid() != RandomIdGenerator(42).NewUuid());
}

TEST_CASE("Time-ordered UUIDs are version 7, sort by their millisecond, and are unique") {
  RandomIdGenerator ids(7);
  const absl::Time t0 = absl::FromUnixMillis(1795834517461);
  std::set<std::string> same_millisecond;
  for (int i = 0; i < 1000; ++i) same_millisecond.insert(ids.NewTimeOrderedUuid(t0));
  REQUIRE(same_millisecond.size() == 1000);
  for (const std::string& id : same_millisecond) {
    REQUIRE(IsUuid(id));
    REQUIRE(id[14] == '7');
    REQUIRE((id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b'));
    // 1795834517461 ms = 0x01a2201417d5: the first 48 bits, in hex, with the dash after 32.
    REQUIRE(id.substr(0, 13) == "01a22014-17d5");
  }
  // Every id of a later millisecond sorts after every id of an earlier one.
  std::string previous = *same_millisecond.rbegin();
  for (int ms = 1; ms <= 1000; ++ms) {
    std::string id = ids.NewTimeOrderedUuid(t0 + absl::Milliseconds(ms));
    REQUIRE(id > previous);
    previous = id;
  }
  // Times outside the 48 bits are clamped rather than wrapped.
  REQUIRE(ids.NewTimeOrderedUuid(absl::UnixEpoch() - absl::Hours(1)).substr(0, 13) ==
          "00000000-0000");
  REQUIRE(ids.NewTimeOrderedUuid(absl::InfiniteFuture()).substr(0, 13) == "ffffffff-ffff");
}

}  // namespace
}  // namespace kiln
