#include "builder-agent/git/repository_url.h"

#include <catch2/catch.hpp>
#include <string>

namespace kiln::builder {
namespace {

RepositoryUrl Parse(const std::string& text) {
  auto url = ParseRepositoryUrl(text);
  INFO(text << ": " << url.status().ToString());
  REQUIRE(url.ok());
  return *url;
}

TEST_CASE("Repository URL: equivalent spellings of a URL share one normalised form and cache key",
          "[git]") {
  RepositoryUrl a = Parse("https://github.com/org/repo.git");
  RepositoryUrl b = Parse("HTTPS://GitHub.com:443/org/repo/");
  CHECK(a.normalized == "https://github.com/org/repo");
  CHECK(b.normalized == a.normalized);
  CHECK(CacheKey(a) == CacheKey(b));
  CHECK(a.name == "repo");
  CHECK(CacheKey(a).rfind("repo-", 0) == 0);
  CHECK(CacheKey(a).size() == 5 + 16);
  CHECK(CacheKey(Parse("https://github.com/org/other")) != CacheKey(a));
  CHECK(Parse("http://127.0.0.1:8080/x/r.git").normalized == "http://127.0.0.1:8080/x/r");
}

TEST_CASE("Repository URL: local paths and file URLs are absolute and normalised", "[git]") {
  RepositoryUrl path = Parse("/srv/git/../git/app.git/");
  CHECK(path.kind == RepositoryUrl::Kind::kLocal);
  CHECK(path.normalized == "file:///srv/git/app");
  CHECK(Parse("file:///srv/git/app").normalized == path.normalized);
  CHECK(path.url == "/srv/git/../git/app.git/");  // libgit2 gets what was asked for
  CHECK_FALSE(path.token_allowed);
  CHECK(ParseRepositoryUrl("srv/git/app").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ParseRepositoryUrl("file://host/srv/app").status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Repository URL: the origin of a URL is scheme host and port", "[git]") {
  CHECK(UrlOrigin("HTTPS://GitHub.com:443/org/r.git/info/refs?service=x") == "https://github.com");
  CHECK(UrlOrigin("http://u:p@127.0.0.1:8080/r") == "http://127.0.0.1:8080");
  CHECK(UrlOrigin("http://127.0.0.1:80") == "http://127.0.0.1");
  CHECK(UrlOrigin("https://[::1]:9/r") == "https://[::1]:9");
  CHECK(UrlOrigin("file:///srv/r").empty());
  CHECK(UrlOrigin("no url").empty());
  CHECK(Parse("https://GITHUB.com/org/r").origin == "https://github.com");
}

TEST_CASE("Repository URL: tokens go only over https or to loopback http", "[git]") {
  CHECK(Parse("https://example.com/r").token_allowed);
  CHECK(Parse("http://127.0.0.1:9/r").token_allowed);
  CHECK(Parse("http://localhost/r").token_allowed);
  CHECK(Parse("http://[::1]:80/r").token_allowed);
  CHECK_FALSE(Parse("http://example.com/r").token_allowed);
}

TEST_CASE(
    "Repository URL: unsupported or unsafe URLs are invalid arguments that echo no credentials",
    "[git]") {
  for (const char* bad : {"", "ssh://host/r", "git@github.com:org/r.git", "https://host",
                          "https:///r", "https://host/r?x=1", "https://host/r#frag",
                          "https://host:99999/r", "https://ho st/r", "https://host/r\n"}) {
    INFO(bad);
    CHECK(ParseRepositoryUrl(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
  auto with_password = ParseRepositoryUrl("https://user:hunter2@github.com/org/r");
  CHECK(with_password.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(with_password.status().message()).find("hunter2") == std::string::npos);
  CHECK(ParseRepositoryUrl("https://github.com/" + std::string(kMaxRepositoryUrlLength, 'a'))
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Repository URL: mirror names are sanitised and never path components like ..", "[git]") {
  CHECK(Parse("https://host/org/we%20ird:name").name == "we_20ird_name");
  CHECK(Parse("/srv/..git").name == "r.");
  CHECK(Parse("https://host/" + std::string(100, 'x')).name.size() == 40);
}

}  // namespace
}  // namespace kiln::builder
