#include "common/auth/token_cache.h"

#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kiln::auth {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

TokenKey Key(char fill) {
  auto key = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, fill));
  REQUIRE(key.ok());
  return *key;
}

std::string Worker(const TokenKey& key, std::string subject, absl::Duration lifetime,
                   absl::Time issued = kNow) {
  Claims claims;
  claims.scope = Scope::kWorker;
  claims.queues = {"jobs"};
  claims.subject = std::move(subject);
  claims.issued = issued;
  claims.expiry = issued + lifetime;
  auto token = key.Mint(claims);
  REQUIRE(token.ok());
  return *token;
}

TEST_CASE("a cached token answers with its claims until it expires") {
  const TokenKey key = Key('k');
  VerifiedTokenCache cache;
  const std::string token = Worker(key, "w1", absl::Hours(1));

  auto first = cache.Verify(key, token, kNow);
  REQUIRE(first.ok());
  CHECK(cache.size() == 1);
  auto again = cache.Verify(key, token, kNow + absl::Minutes(59));
  REQUIRE(again.ok());
  CHECK(again->subject == "w1");
  CHECK(again->queues == std::vector<std::string>{"jobs"});
  CHECK(again->id == first->id);
  CHECK(cache.size() == 1);

  // Cached or not, a token past its expiry is refused as Verify refuses it, and dropped.
  auto expired = cache.Verify(key, token, kNow + absl::Hours(1));
  CHECK(absl::IsUnauthenticated(expired.status()));
  CHECK(expired.status().message() == key.Verify(token, kNow + absl::Hours(1)).status().message());
  CHECK(cache.size() == 0);
}

TEST_CASE("a cached token issued ahead of the clock is refused for a clock set back") {
  const TokenKey key = Key('k');
  VerifiedTokenCache cache;
  const std::string token = Worker(key, "w1", absl::Hours(1), kNow + absl::Minutes(4));
  REQUIRE(cache.Verify(key, token, kNow).ok());
  auto early = cache.Verify(key, token, kNow - absl::Minutes(2));
  CHECK(absl::IsUnauthenticated(early.status()));
  // Not dropped: it becomes valid again once the clock is right.
  CHECK(cache.size() == 1);
  CHECK(cache.Verify(key, token, kNow).ok());
}

TEST_CASE("tokens that fail to verify are refused every time and never cached") {
  const TokenKey key = Key('k');
  VerifiedTokenCache cache;
  const std::string foreign = Worker(Key('x'), "w1", absl::Hours(1));
  std::string tampered = Worker(key, "w1", absl::Hours(1));
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  for (int i = 0; i < 3; ++i) {
    CHECK(absl::IsUnauthenticated(cache.Verify(key, foreign, kNow).status()));
    CHECK(absl::IsUnauthenticated(cache.Verify(key, tampered, kNow).status()));
    CHECK(absl::IsUnauthenticated(cache.Verify(key, "kiln1.garbage", kNow).status()));
  }
  CHECK(cache.size() == 0);
}

TEST_CASE("the cache holds at most its capacity and drops the least recently used") {
  const TokenKey key = Key('k');
  VerifiedTokenCache cache(2);
  const std::string a = Worker(key, "a", absl::Hours(1));
  const std::string b = Worker(key, "b", absl::Hours(1));
  const std::string c = Worker(key, "c", absl::Hours(1));
  REQUIRE(cache.Verify(key, a, kNow).ok());
  REQUIRE(cache.Verify(key, b, kNow).ok());
  REQUIRE(cache.Verify(key, a, kNow).ok());  // a is now the most recent
  REQUIRE(cache.Verify(key, c, kNow).ok());  // b goes
  CHECK(cache.size() == 2);
  // Each still answers (a miss verifies again); the bound holds.
  for (const std::string* token : {&a, &b, &c}) {
    auto claims = cache.Verify(key, *token, kNow);
    REQUIRE(claims.ok());
  }
  CHECK(cache.size() == 2);
}

TEST_CASE("the cache answers from many threads at once") {
  const TokenKey key = Key('k');
  VerifiedTokenCache cache(4);
  std::vector<std::string> tokens;
  for (int i = 0; i < 8; ++i) tokens.push_back(Worker(key, absl::StrCat("w", i), absl::Hours(1)));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string& token = tokens[static_cast<size_t>((i + t) % 8)];
        auto claims = cache.Verify(key, token, kNow);
        if (!claims.ok() || claims->subject != absl::StrCat("w", (i + t) % 8)) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures.load() == 0);
  CHECK(cache.size() <= 4);
}

}  // namespace
}  // namespace kiln::auth
