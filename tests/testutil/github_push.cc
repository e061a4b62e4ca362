#include "tests/testutil/github_push.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/json_scalar.h"
#include "worker/http/github_signature.h"

namespace kiln::testutil {

std::string GithubRepositoryJson(const std::string& url) {
  std::string u = json::EncodeString(url);
  return absl::StrCat(
      R"({"id":708234512,"node_id":"R_kgDOKjZcEA","name":"web","full_name":"kiln-e2e/web","private":false,"owner":{"name":"kiln-e2e","login":"kiln-e2e","id":1},"html_url":)",
      u, R"(,"url":)", u, R"(,"clone_url":)", u, R"(,"git_url":)", u, R"(,"ssh_url":)", u,
      R"(,"default_branch":"main","master_branch":"main","created_at":1700000000,"pushed_at":1700000100})");
}

std::string GithubPushPayload(const std::string& url, const std::string& branch,
                              const std::string& before, const std::string& after,
                              const std::string& tree, const std::string& message) {
  std::string commit = absl::StrCat(
      R"({"id":")", after, R"(","tree_id":")", tree, R"(","distinct":true,"message":)",
      json::EncodeString(message),
      R"(,"timestamp":"2026-12-06T12:00:00Z","url":"https://example.invalid/commit","author":{"name":"Kiln Test","email":"test@kiln.invalid","username":"kiln"},"committer":{"name":"Kiln Test","email":"test@kiln.invalid","username":"kiln"},"added":[],"removed":[],"modified":["www/index.html"]})");
  return absl::StrCat(
      R"({"ref":"refs/heads/)", branch, R"(","before":")", before, R"(","after":")", after,
      R"(","created":false,"deleted":false,"forced":false,"base_ref":null,"compare":"https://example.invalid/compare","commits":[)",
      commit, R"(],"head_commit":)", commit, R"(,"repository":)", GithubRepositoryJson(url),
      R"(,"pusher":{"name":"kiln","email":"test@kiln.invalid"},"sender":{"login":"kiln","id":1,"type":"User"}})");
}

std::string GithubDeletePayload(const std::string& url, const std::string& branch) {
  return absl::StrCat(
      R"({"ref":")", branch, R"(","ref_type":"branch","pusher_type":"user","repository":)",
      GithubRepositoryJson(url), R"(,"sender":{"login":"kiln","id":1,"type":"User"}})");
}

absl::StatusOr<HttpReply> DeliverGithubEvent(int port, const std::string& event,
                                             const std::string& delivery,
                                             const std::string& payload,
                                             const std::string& secret) {
  HttpCallOptions options;
  options.headers = {{"Content-Type", "application/json"},
                     {"User-Agent", "GitHub-Hookshot/e2e"},
                     {"X-GitHub-Event", event},
                     {"X-GitHub-Delivery", delivery},
                     {"X-Hub-Signature-256", worker::GithubSignature(secret, payload)}};
  options.body = payload;
  return HttpCall(port, "POST", "/webhooks/github", options);
}

std::string DeploymentIdIn(const std::string& body) {
  constexpr std::string_view kKey = "\"deployment_id\":\"";
  auto at = body.find(kKey);
  if (at == std::string::npos) return "";
  at += kKey.size();
  return body.substr(at, body.find('"', at) - at);
}

}  // namespace kiln::testutil
