#include "worker/http/delivery_cache.h"

#include <catch2/catch.hpp>

namespace kiln::worker {
namespace {

HttpResponse Answer(int status) {
  HttpResponse r;
  r.status = status;
  r.body = std::to_string(status);
  return r;
}

TEST_CASE("DeliveryCache returns what was put and evicts the least recently used") {
  DeliveryCache cache(2);
  CHECK_FALSE(cache.Get("a").has_value());
  cache.Put("a", Answer(202));
  cache.Put("b", Answer(404));
  REQUIRE(cache.Get("a").has_value());  // "a" is now the most recent.
  cache.Put("c", Answer(400));          // Evicts "b".
  CHECK(cache.size() == 2);
  CHECK_FALSE(cache.Get("b").has_value());
  REQUIRE(cache.Get("a").has_value());
  CHECK(cache.Get("a")->body == "202");
  CHECK(cache.Get("c")->status == 400);
  cache.Put("c", Answer(409));  // Replaces, does not grow.
  CHECK(cache.size() == 2);
  CHECK(cache.Get("c")->status == 409);
}

}  // namespace
}  // namespace kiln::worker
