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

}  // namespace
}  // namespace kiln
