// The webhook endpoint as GitHub meets it: a real server on 127.0.0.1, real HTTP requests,
// GitHub's payloads signed the way GitHub signs them, and a backend that records its calls.
#include "worker/http/webhook_server.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/testutil/http.h"
#include "worker/http/fake_webhook_backend.h"
#include "worker/http/github_signature.h"

namespace kiln::worker {
namespace {

using testutil::HttpCall;
using testutil::HttpCallOptions;
using testutil::HttpReply;

constexpr char kSecret[] = "s3cr3t-for-hello-world";
constexpr char kOtherSecret[] = "another project's secret";
constexpr int64_t kBodyLimit = 256 * 1024;

std::string Payload(const std::string& name) {
  std::ifstream in(std::string(KILN_WEBHOOK_TESTDATA) + "/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Fixture {
  Fixture() {
    backend.SetProjects({
        {"hello", "https://github.com/octo-org/Hello-World", kSecret},
        {"other", "https://github.com/octo-org/Other", kOtherSecret},
        {"no-secret", "https://github.com/octo-org/Hello-World", ""},
    });
    WebhookServerOptions options;
    options.max_body_bytes = kBodyLimit;
    options.threads = 2;
    auto started = WebhookServer::Start(options, &backend);
    REQUIRE(started.ok());
    server = *std::move(started);
  }

  // POSTs `body` as GitHub would: its headers, signed with `secret` unless `signature` is set.
  HttpReply Deliver(const std::string& event, const std::string& delivery, const std::string& body,
                    const std::string& secret = kSecret, const std::string* signature = nullptr) {
    HttpCallOptions options;
    options.headers = {{"User-Agent", "GitHub-Hookshot/044aadd"},
                       {"Content-Type", "application/json"},
                       {"X-GitHub-Event", event},
                       {"X-GitHub-Delivery", delivery},
                       {"X-GitHub-Hook-ID", "109948940"},
                       {"X-GitHub-Hook-Installation-Target-Type", "repository"},
                       {"X-GitHub-Hook-Installation-Target-ID", "186853002"},
                       {"X-Hub-Signature", "sha1=0000000000000000000000000000000000000000"}};
    options.headers.emplace_back("X-Hub-Signature-256",
                                 signature != nullptr ? *signature : GithubSignature(secret, body));
    options.body = body;
    auto reply = HttpCall(server->port(), "POST", "/webhooks/github", options);
    REQUIRE(reply.ok());
    CHECK(reply->Header("Content-Type") == "application/json");
    return *reply;
  }

  FakeWebhookBackend backend;  // Outlives the server.
  std::unique_ptr<WebhookServer> server;
};

TEST_CASE("Webhook: a push deploys, tags are ignored, deletions delete, ping pongs") {
  Fixture f;
  auto health = HttpCall(f.server->port(), "GET", "/healthz");
  REQUIRE(health.ok());
  CHECK(health->status == 200);

  f.backend.SetPushResult(std::string("dep-\"42\""));
  HttpReply push = f.Deliver("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", Payload("push.json"));
  CHECK(push.status == 202);
  CHECK(push.body ==
        R"({"status":"accepted","project":"hello","branch":"main",)"
        R"("commit":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","deployment_id":"dep-\"42\""})");
  auto pushes = f.backend.pushes();
  REQUIRE(pushes.size() == 1);
  CHECK(pushes[0].delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958");
  CHECK(pushes[0].project_id == "hello");
  CHECK(pushes[0].branch == "main");
  CHECK(pushes[0].commit_sha == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");
  CHECK(pushes[0].tree_id == "f9d2a07e9488b91af2641b26b9407fe22a451433");
  CHECK(pushes[0].message == "Update README.md: say hello \"world\" \u2014 caf\u00e9");
  CHECK(pushes[0].pusher == "Codertocat");

  HttpReply tag = f.Deliver("push", "d-tag", Payload("push_tag.json"));
  CHECK(tag.status == 202);
  CHECK(tag.body == R"({"status":"ignored","project":"hello","reason":"tag push"})");

  HttpReply deleting_push = f.Deliver("push", "d-del-push", Payload("push_delete_branch.json"));
  CHECK(deleting_push.status == 202);
  CHECK(
      deleting_push.body ==
      R"({"status":"accepted","project":"hello","action":"delete_branch","branch":"feature/old"})");
  HttpReply del = f.Deliver("delete", "d-del", Payload("delete.json"));
  CHECK(del.status == 202);
  HttpReply del_tag = f.Deliver("delete", "d-del-tag", Payload("delete_tag.json"));
  CHECK(del_tag.status == 202);
  CHECK(del_tag.body == R"({"status":"ignored","project":"hello","reason":"tag deleted"})");
  auto deletes = f.backend.deletes();
  REQUIRE(deletes.size() == 2);
  CHECK(deletes[0].delivery_id == "d-del-push");
  CHECK(deletes[0].branch == "feature/old");
  CHECK(deletes[1].delivery_id == "d-del");
  CHECK(deletes[1].project_id == "hello");
  CHECK(deletes[1].branch == "feature/old");

  HttpReply ping = f.Deliver("ping", "d-ping", Payload("ping.json"));
  CHECK(ping.status == 200);
  CHECK(ping.body == R"({"status":"pong","project":"hello","zen":"Design for failure."})");
  CHECK(f.backend.pushes().size() == 1);  // Nothing else reached Push.
}

TEST_CASE("Webhook: refusals start nothing") {
  Fixture f;
  const std::string push = Payload("push.json");

  SECTION("bad, missing or another project's signature: 401") {
    std::string wrong = GithubSignature("guess", push);
    CHECK(f.Deliver("push", "d1", push, kSecret, &wrong).status == 401);
    std::string empty;
    CHECK(f.Deliver("push", "d2", push, kSecret, &empty).status == 401);
    // The body altered after signing.
    std::string signature = GithubSignature(kSecret, push);
    std::string altered = push;
    altered.replace(altered.find("refs/heads/main"), 15, "refs/heads/prod");
    CHECK(f.Deliver("push", "d3", altered, kSecret, &signature).status == 401);
    // No header at all.
    HttpCallOptions options;
    options.headers = {{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", "d4"}};
    options.body = push;
    auto unsigned_reply = HttpCall(f.server->port(), "POST", "/webhooks/github", options);
    REQUIRE(unsigned_reply.ok());
    CHECK(unsigned_reply->status == 401);
    CHECK(unsigned_reply->body == R"({"error":"missing X-Hub-Signature-256 header"})");
  }
  SECTION("a repository that is not the signing project's: 404") {
    HttpReply reply = f.Deliver("push", "d5", push, kOtherSecret);
    CHECK(reply.status == 404);
    CHECK(reply.body.find("octo-org/Hello-World") != std::string::npos);
  }
  SECTION("malformed JSON, correctly signed: 400") {
    std::string broken = push.substr(0, push.size() / 2);
    CHECK(f.Deliver("push", "d6", broken).status == 400);
    CHECK(f.Deliver("push", "d7", "{\"ref\": \"refs/heads/main\"}").status == 400);
  }
  SECTION("a body over the limit: 413") {
    // Still valid JSON: the padding is a field GitHub might add.
    std::string big = push;
    big.insert(1, "\"padding\":\"" + std::string(kBodyLimit, 'p') + "\",");
    CHECK(f.Deliver("push", "d8", big).status == 413);
  }
  SECTION("an unsupported event: 400") {
    HttpReply reply = f.Deliver("pull_request", "d9", push);
    CHECK(reply.status == 400);
    CHECK(reply.body == R"({"error":"unsupported event: pull_request"})");
  }
  SECTION("missing event or delivery headers: 400; another method: 405") {
    HttpCallOptions options;
    options.headers = {{"X-GitHub-Event", "push"},
                       {"X-Hub-Signature-256", GithubSignature(kSecret, push)}};
    options.body = push;
    auto reply = HttpCall(f.server->port(), "POST", "/webhooks/github", options);
    REQUIRE(reply.ok());
    CHECK(reply->status == 400);
    options.headers = {{"X-GitHub-Delivery", "d10"},
                       {"X-Hub-Signature-256", GithubSignature(kSecret, push)}};
    reply = HttpCall(f.server->port(), "POST", "/webhooks/github", options);
    REQUIRE(reply.ok());
    CHECK(reply->status == 400);
    auto get = HttpCall(f.server->port(), "GET", "/webhooks/github");
    REQUIRE(get.ok());
    CHECK(get->status == 405);
    CHECK(get->Header("Allow") == "POST");
  }
  SECTION("a form-encoded delivery: 400 naming the fix") {
    HttpCallOptions options;
    std::string form = "payload=%7B%7D";
    options.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                       {"X-GitHub-Event", "push"},
                       {"X-GitHub-Delivery", "d11"},
                       {"X-Hub-Signature-256", GithubSignature(kSecret, form)}};
    options.body = form;
    auto reply = HttpCall(f.server->port(), "POST", "/webhooks/github", options);
    REQUIRE(reply.ok());
    CHECK(reply->status == 400);
    CHECK(reply->body.find("application/json") != std::string::npos);
  }
  CHECK(f.backend.calls() == 0);
}

TEST_CASE("Webhook: a redelivery gets the same answer without reaching the backend") {
  Fixture f;
  const std::string push = Payload("push.json");
  f.backend.SetPushResult(std::string("dep-1"));
  HttpReply first = f.Deliver("push", "same-delivery", push);
  CHECK(first.status == 202);
  f.backend.SetPushResult(std::string("dep-2"));
  HttpReply second = f.Deliver("push", "same-delivery", push);
  CHECK(second.status == first.status);
  CHECK(second.body == first.body);
  CHECK(f.backend.pushes().size() == 1);
  // A new delivery of the same push is a new call (the backend decides what it means).
  CHECK(f.Deliver("push", "another-delivery", push).body.find("dep-2") != std::string::npos);
  CHECK(f.backend.pushes().size() == 2);

  // A bad signature does not read the remembered answer.
  std::string wrong = GithubSignature("guess", push);
  CHECK(f.Deliver("push", "same-delivery", push, kSecret, &wrong).status == 401);
}

TEST_CASE("Webhook: backend errors map to HTTP, and 5xx ones are retried") {
  Fixture f;
  const std::string push = Payload("push.json");
  f.backend.SetPushResult(absl::NotFoundError("no such project"));
  CHECK(f.Deliver("push", "e1", push).status == 404);
  f.backend.SetPushResult(absl::InvalidArgumentError("bad branch"));
  HttpReply invalid = f.Deliver("push", "e2", push);
  CHECK(invalid.status == 422);
  CHECK(invalid.body == R"({"error":"bad branch"})");
  f.backend.SetPushResult(absl::FailedPreconditionError("project paused"));
  CHECK(f.Deliver("push", "e3", push).status == 409);
  f.backend.SetPushResult(absl::InternalError("bug"));
  CHECK(f.Deliver("push", "e4", push).status == 500);
  f.backend.SetDeleteResult(absl::UnavailableError("engine down"));
  CHECK(f.Deliver("delete", "e5", Payload("delete.json")).status == 503);
  // Redelivered once the backend is back: tried again, not answered from memory.
  f.backend.SetDeleteResult(absl::OkStatus());
  CHECK(f.Deliver("delete", "e5", Payload("delete.json")).status == 202);
  CHECK(f.backend.deletes().size() == 2);
  // A 4xx answer is final and remembered.
  CHECK(f.Deliver("push", "e2", push).status == 422);
  CHECK(f.backend.pushes().size() == 4);
}

}  // namespace
}  // namespace kiln::worker
