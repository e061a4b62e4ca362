#include "worker/http/github_payload.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

namespace kiln::worker {
namespace {

std::string Payload(const std::string& name) {
  std::ifstream in(std::string(KILN_WEBHOOK_TESTDATA) + "/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::vector<std::string> kHelloWorldUrls = {
    "https://github.com/octo-org/Hello-World.git", "https://github.com/octo-org/Hello-World",
    "git@github.com:octo-org/Hello-World.git", "git://github.com/octo-org/Hello-World.git"};

TEST_CASE("A push to a branch is a deployment of its head") {
  auto d = ParseGithubDelivery("push", Payload("push.json"));
  REQUIRE(d.ok());
  CHECK(d->action == GithubAction::kPush);
  CHECK(d->branch == "main");
  CHECK(d->commit_sha == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");
  CHECK(d->tree_id == "f9d2a07e9488b91af2641b26b9407fe22a451433");
  CHECK(d->message == "Update README.md: say hello \"world\" \u2014 caf\u00e9");
  CHECK(d->pusher == "Codertocat");
  CHECK(d->repository_urls == kHelloWorldUrls);
  CHECK(d->repository_name == "octo-org/Hello-World");
}

TEST_CASE("A push that deletes a branch, or a delete event, deletes the branch") {
  auto push = ParseGithubDelivery("push", Payload("push_delete_branch.json"));
  REQUIRE(push.ok());
  CHECK(push->action == GithubAction::kDeleteBranch);
  CHECK(push->branch == "feature/old");

  auto del = ParseGithubDelivery("delete", Payload("delete.json"));
  REQUIRE(del.ok());
  CHECK(del->action == GithubAction::kDeleteBranch);
  CHECK(del->branch == "feature/old");
  CHECK(del->repository_urls == kHelloWorldUrls);

  // after=0…0 alone (deleted not set) is a deletion too.
  auto zero = ParseGithubDelivery(
      "push", R"({"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000",
                  "repository":{"clone_url":"https://github.com/o/r.git"}})");
  REQUIRE(zero.ok());
  CHECK(zero->action == GithubAction::kDeleteBranch);
}

TEST_CASE("Tags are ignored") {
  auto push = ParseGithubDelivery("push", Payload("push_tag.json"));
  REQUIRE(push.ok());
  CHECK(push->action == GithubAction::kIgnore);
  CHECK(push->ignore_reason == "tag push");
  auto del = ParseGithubDelivery("delete", Payload("delete_tag.json"));
  REQUIRE(del.ok());
  CHECK(del->action == GithubAction::kIgnore);
}

TEST_CASE("A ping is answered") {
  auto ping = ParseGithubDelivery("ping", Payload("ping.json"));
  REQUIRE(ping.ok());
  CHECK(ping->action == GithubAction::kPing);
  CHECK(ping->zen == "Design for failure.");
  CHECK(ping->repository_urls == kHelloWorldUrls);
  auto org_ping =
      ParseGithubDelivery("ping", R"({"zen":"Keep it logically awesome.","hook_id":1})");
  REQUIRE(org_ping.ok());
  CHECK(org_ping->repository_urls.empty());
}

TEST_CASE("Malformed or incomplete payloads and other events are invalid") {
  auto code = [](std::string_view event, std::string_view body) {
    return ParseGithubDelivery(event, body).status().code();
  };
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  CHECK(code("push", "") == kInvalid);
  CHECK(code("push", "{\"ref\": ") == kInvalid);
  CHECK(code("push", "[1,2]") == kInvalid);
  CHECK(code("push", R"({"ref": 7})") == kInvalid);
  CHECK(code("push", "{\"ref\":\"refs/heads/\xff\"}") == kInvalid);  // Not UTF-8.
  // No repository; no ref; an after that is no commit id.
  CHECK(code("push",
             R"({"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"})") ==
        kInvalid);
  CHECK(code("push", R"({"repository":{"clone_url":"https://github.com/o/r.git"}})") == kInvalid);
  CHECK(code("push", R"({"ref":"refs/heads/main","after":"HEAD",
                         "repository":{"clone_url":"https://github.com/o/r.git"}})") == kInvalid);
  CHECK(code("delete", R"({"ref":"x","ref_type":"branch"})") == kInvalid);
  CHECK(code("delete", R"({"ref":"","ref_type":"branch",
                           "repository":{"clone_url":"https://github.com/o/r.git"}})") == kInvalid);
  CHECK(code("pull_request", Payload("push.json")) == kInvalid);
  CHECK(code("issues", "{}") == kInvalid);
}

TEST_CASE("A long first line is cut on a character boundary") {
  std::string message(kMaxGithubMessageBytes - 1, 'a');
  message += "\u00e9\u00e9 and more\nbody";  // The limit falls inside the first é.
  std::string body = R"({"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
      "repository":{"clone_url":"https://github.com/o/r.git"},"head_commit":{"message":")" +
                     message + "\"}}";
  body.replace(body.find("\nbody"), 1, "\\n");
  auto d = ParseGithubDelivery("push", body);
  REQUIRE(d.ok());
  CHECK(d->message == std::string(kMaxGithubMessageBytes - 1, 'a'));
  CHECK(d->tree_id.empty());
}

TEST_CASE("Repository URLs compare after normalisation") {
  CHECK(NormalizeRepositoryUrl("https://GitHub.com/Octo-Org/Hello-World.git/") ==
        "https://github.com/Octo-Org/Hello-World");
  CHECK(NormalizeRepositoryUrl("HTTPS://User@GITHUB.COM:443/o/r/") ==
        "https://User@github.com:443/o/r");
  CHECK(NormalizeRepositoryUrl("git@GitHub.com:o/r.git") == "git@github.com:o/r");
  CHECK(NormalizeRepositoryUrl("/srv/git/r.git/") == "/srv/git/r.git/");
  CHECK(NormalizeRepositoryUrl("file:///srv/git/r.git") == "file:///srv/git/r.git");

  CHECK(RepositoryMatches(kHelloWorldUrls, "https://github.com/octo-org/Hello-World"));
  CHECK(RepositoryMatches(kHelloWorldUrls, "https://GITHUB.com/octo-org/Hello-World.git/"));
  CHECK(RepositoryMatches(kHelloWorldUrls, "git@github.com:octo-org/Hello-World"));
  CHECK(RepositoryMatches(kHelloWorldUrls, "git://github.com/octo-org/Hello-World"));
  CHECK_FALSE(RepositoryMatches(kHelloWorldUrls, "https://github.com/octo-org/Hello-Worlds"));
  CHECK_FALSE(RepositoryMatches(kHelloWorldUrls, "https://github.com/other/Hello-World"));
  CHECK_FALSE(RepositoryMatches(kHelloWorldUrls, ""));
  CHECK(RepositoryMatches({"/srv/git/r.git"}, "/srv/git/r.git"));
  CHECK_FALSE(RepositoryMatches({"/srv/git/r.git"}, "/srv/git/r"));
}

}  // namespace
}  // namespace kiln::worker
