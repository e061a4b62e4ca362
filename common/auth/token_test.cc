#include "common/auth/token.h"

#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <thread>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tests/testutil/process.h"

namespace kiln::auth {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

TokenKey Key(char fill) {
  auto key = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, fill));
  REQUIRE(key.ok());
  return *key;
}

Claims Agent(std::string project = "a") {
  Claims claims;
  claims.scope = Scope::kAgent;
  claims.project = std::move(project);
  claims.subject = "agent:a";
  claims.issued = kNow;
  claims.expiry = kNow + absl::Hours(1);
  return claims;
}

// A token over `payload` signed with Key('k'), built here independently of TokenKey.
std::string SignedWithK(const std::string& payload) {
  const std::string key(token_limits::kKeyBytes, 'k');
  std::string signed_part = absl::StrCat("kiln1.", absl::WebSafeBase64Escape(payload));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
       &mac_len);
  return absl::StrCat(
      signed_part, ".",
      absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(mac), mac_len)));
}

void RequireUnauthenticated(const absl::StatusOr<Claims>& verified, const std::string& token) {
  INFO(verified.status().ToString());
  REQUIRE(absl::IsUnauthenticated(verified.status()));
  // The reason never echoes the token or a piece of it.
  const std::string message(verified.status().message());
  for (size_t i = 0; i + 8 <= token.size(); i += 4) {
    REQUIRE(message.find(token.substr(i, 8)) == std::string::npos);
  }
}

TEST_CASE("a minted token verifies with its claims") {
  TokenKey key = Key('k');
  auto token = key.Mint(Agent());
  REQUIRE(token.ok());
  REQUIRE(token->rfind("kiln1.", 0) == 0);
  auto claims = key.Verify(*token, kNow + absl::Minutes(59));
  INFO(claims.status().ToString());
  REQUIRE(claims.ok());
  CHECK(claims->scope == Scope::kAgent);
  CHECK(claims->project == "a");
  CHECK(claims->subject == "agent:a");
  CHECK(!claims->id.empty());
  CHECK(claims->issued == kNow);
  CHECK(claims->expiry == kNow + absl::Hours(1));

  for (Scope scope : {Scope::kAdmin, Scope::kWorker, Scope::kReadOnly}) {
    Claims c = Agent("");
    c.scope = scope;
    auto t = key.Mint(c);
    REQUIRE(t.ok());
    auto v = key.Verify(*t, kNow);
    REQUIRE(v.ok());
    CHECK(v->scope == scope);
    CHECK(ParseScope(ScopeName(scope)).value() == scope);
  }
}

TEST_CASE("Mint refuses claims Verify would refuse") {
  TokenKey key = Key('k');
  Claims c = Agent("");
  CHECK(absl::IsInvalidArgument(key.Mint(c).status()));  // Agent without a project.
  c = Agent();
  c.scope = Scope::kAdmin;
  CHECK(absl::IsInvalidArgument(key.Mint(c).status()));  // Project on an admin token.
  c = Agent("has space");
  CHECK(absl::IsInvalidArgument(key.Mint(c).status()));
  c = Agent(std::string(token_limits::kMaxFieldBytes + 1, 'p'));
  CHECK(absl::IsInvalidArgument(key.Mint(c).status()));
  c = Agent();
  c.expiry = c.issued;
  CHECK(absl::IsInvalidArgument(key.Mint(c).status()));
  c.expiry = c.issued + token_limits::kMaxLifetime + absl::Seconds(1);
  CHECK(absl::IsInvalidArgument(key.Mint(c).status()));
}

TEST_CASE("a tampered, foreign, expired or malformed token is unauthenticated") {
  TokenKey key = Key('k');
  const std::string token = key.Mint(Agent()).value();
  const size_t dot = token.rfind('.');

  SECTION("tampered payload") {
    // Same signature over another payload: project b instead of a.
    std::string other = key.Mint(Agent("b")).value();
    std::string forged = other.substr(0, other.rfind('.')) + token.substr(dot);
    RequireUnauthenticated(key.Verify(forged, kNow), forged);
    std::string flipped = token;
    flipped[10] = flipped[10] == 'A' ? 'B' : 'A';
    RequireUnauthenticated(key.Verify(flipped, kNow), flipped);
  }
  SECTION("tampered signature") {
    std::string flipped = token;
    flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
    RequireUnauthenticated(key.Verify(flipped, kNow), flipped);
    RequireUnauthenticated(key.Verify(token.substr(0, token.size() - 1), kNow), token);
  }
  SECTION("another key") { RequireUnauthenticated(Key('x').Verify(token, kNow), token); }
  SECTION("expired, and issued in the future") {
    RequireUnauthenticated(key.Verify(token, kNow + absl::Hours(1)), token);
    auto future = key.Verify(token, kNow - absl::Minutes(10));
    RequireUnauthenticated(future, token);
  }
  SECTION("malformed") {
    for (std::string bad :
         {std::string(""), std::string("Bearer"), std::string("kiln1."), std::string("kiln1.."),
          std::string("kiln2") + token.substr(5), token.substr(dot),
          std::string(token_limits::kMaxTokenBytes + 1, 'a'), token + ".extra"}) {
      RequireUnauthenticated(key.Verify(bad, kNow), bad);
    }
    // Correctly signed (the test knows the key's bytes) but not a payload Mint writes: an
    // unknown scope, a stray field, a field twice, an agent without a project, a bad time.
    for (std::string payload :
         {std::string("v=1\nscope=root\nsub=x\nid=1\niat=1700000000\nexp=1700003600"),
          std::string("v=1\nscope=admin\nsub=x\nid=1\niat=1700000000\nexp=1700003600\nx=1"),
          std::string("v=1\nscope=admin\nsub=x\nid=1\niat=1700000000\nexp=1700003600\nsub=y"),
          std::string("v=1\nscope=agent\nsub=x\nid=1\niat=1700000000\nexp=1700003600"),
          std::string("v=1\nscope=admin\nsub=x\nid=1\niat=soon\nexp=1700003600"),
          std::string("v=2\nscope=admin\nsub=x\nid=1\niat=1700000000\nexp=1700003600")}) {
      std::string forged = SignedWithK(payload);
      RequireUnauthenticated(key.Verify(forged, kNow), forged);
    }
    // The same construction with a payload Mint would write passes (the helper is right).
    CHECK(key.Verify(SignedWithK("v=1\nscope=admin\nsub=x\nid=1\niat=1700000000\nexp=1700003600"),
                     kNow)
              .ok());
  }
}

TEST_CASE("key files: created once with mode 0600, refused when open to others or wrong size") {
  testutil::TempDir dir;
  const std::string path = dir.path() + "/auth.key";
  REQUIRE(absl::IsNotFound(TokenKey::Load(path).status()));
  auto created = TokenKey::LoadOrCreate(path);
  INFO(created.status().ToString());
  REQUIRE(created.ok());
  struct stat st = {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == static_cast<off_t>(token_limits::kKeyBytes));

  // The same key again, by Load and by LoadOrCreate: tokens cross over.
  const std::string token = created->Mint(Agent()).value();
  CHECK(TokenKey::Load(path)->Verify(token, kNow).ok());
  CHECK(TokenKey::LoadOrCreate(path)->Verify(token, kNow).ok());

  // Another file is another key.
  auto other = TokenKey::LoadOrCreate(dir.path() + "/other.key");
  REQUIRE(other.ok());
  CHECK(absl::IsUnauthenticated(other->Verify(token, kNow).status()));

  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  auto open = TokenKey::Load(path);
  CHECK(absl::IsFailedPrecondition(open.status()));
  CHECK(open.status().message().find("group or others") != std::string::npos);
  CHECK(absl::IsFailedPrecondition(TokenKey::LoadOrCreate(path).status()));

  const std::string short_path = dir.path() + "/short.key";
  std::ofstream(short_path) << "too short";
  REQUIRE(::chmod(short_path.c_str(), 0600) == 0);
  auto short_key = TokenKey::Load(short_path);
  CHECK(absl::IsFailedPrecondition(short_key.status()));
  CHECK(short_key.status().message().find("bytes") != std::string::npos);
}

}  // namespace
}  // namespace kiln::auth

namespace kiln::auth {
namespace {

TEST_CASE("a worker token carries its task queues and only a worker token may") {
  Claims worker;
  worker.scope = Scope::kWorker;
  worker.subject = "kiln-worker";
  worker.queues = {"kiln-platform", "jobs-*"};
  worker.issued = absl::FromUnixSeconds(1'700'000'000);
  worker.expiry = worker.issued + absl::Hours(1);
  auto key = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, 'w'));
  REQUIRE(key.ok());
  auto token = key->Mint(worker);
  REQUIRE(token.ok());
  auto claims = key->Verify(*token, worker.issued);
  REQUIRE(claims.ok());
  CHECK(claims->queues == worker.queues);
  CHECK(ServesQueue(claims->queues, "kiln-platform"));
  CHECK(ServesQueue(claims->queues, "jobs-7"));
  CHECK(ServesQueue(claims->queues, "jobs-"));
  CHECK_FALSE(ServesQueue(claims->queues, "jobs"));
  CHECK_FALSE(ServesQueue(claims->queues, "kiln-platform-2"));
  CHECK_FALSE(ServesQueue({}, "kiln-platform"));

  Claims admin = worker;
  admin.scope = Scope::kAdmin;
  CHECK(absl::IsInvalidArgument(key->Mint(admin).status()));
  worker.queues = {"a,b"};
  CHECK(absl::IsInvalidArgument(key->Mint(worker).status()));
  worker.queues = {""};
  CHECK(absl::IsInvalidArgument(key->Mint(worker).status()));
}

TEST_CASE("Mac depends on the key and the domain") {
  auto k1 = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, '1'));
  auto k2 = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, '2'));
  REQUIRE(k1.ok());
  REQUIRE(k2.ok());
  CHECK(k1->Mac("task", "m").size() == 32);
  CHECK(k1->Mac("task", "m") == k1->Mac("task", "m"));
  CHECK(k1->Mac("task", "m") != k2->Mac("task", "m"));
  CHECK(k1->Mac("task", "m") != k1->Mac("other", "m"));
}

TEST_CASE("Mac is HMAC-SHA256 of the domain a newline and the message from any thread") {
  // Task tokens in workers' hands outlive an orchestrator's restart: the bytes must not change
  // with how the MAC is computed (a key prepared once and copied per call).
  auto key = TokenKey::FromBytes(std::string(token_limits::kKeyBytes, 'k'));
  REQUIRE(key.ok());
  const std::string raw(token_limits::kKeyBytes, 'k');
  auto expected = [&](const std::string& input) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), raw.data(), static_cast<int>(raw.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len);
    return std::string(reinterpret_cast<const char*>(mac), mac_len);
  };
  CHECK(key->Mac("task", "message") == expected("task\nmessage"));
  CHECK(key->Mac("", "") == expected("\n"));
  // A copy of the key shares the prepared MAC; threads use it at once.
  const TokenKey copy = *key;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const TokenKey& k = t % 2 == 0 ? *key : copy;
      for (int i = 0; i < 500; ++i) {
        const std::string message = absl::StrCat("m", i);
        if (k.Mac("d", message) != expected("d\n" + message)) ++wrong;
        if (!k.Verify(SignedWithK("v=1\nscope=admin\nsub=s\nid=x\niat=1700000000\nexp=1700003600"),
                      kNow)
                 .ok()) {
          ++wrong;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(wrong.load() == 0);
}

}  // namespace
}  // namespace kiln::auth
