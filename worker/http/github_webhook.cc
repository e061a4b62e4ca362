#include "worker/http/github_webhook.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/json_scalar.h"
#include "common/logging.h"
#include "worker/http/github_signature.h"

namespace kiln::worker {
namespace {

HttpResponse JsonAnswer(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

// `"key":"value"` with the value escaped.
std::string Field(std::string_view key, std::string_view value) {
  return absl::StrCat("\"", absl::string_view(key.data(), key.size()),
                      "\":", json::EncodeString(value));
}

void LogDelivery(std::string_view remote, std::string_view event, std::string_view delivery_id,
                 std::string_view project, int status, std::string_view outcome,
                 std::string_view detail) {
  LogInfo("webhook.delivery", {{"remote", remote},
                               {"event", event},
                               {"delivery", delivery_id},
                               {"project", project},
                               {"status", status},
                               {"outcome", outcome},
                               {"detail", detail}});
}

// The "error" of a JSON error body, for the log.
std::string Detail(const HttpResponse& response) {
  return response.status >= 400 ? response.body : std::string();
}

}  // namespace

int HttpStatusForBackendError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kInvalidArgument:
      return 422;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

GithubWebhookHandler::GithubWebhookHandler(WebhookBackend* backend, size_t delivery_cache_entries)
    : backend_(backend), answered_(delivery_cache_entries) {}

HttpResponse GithubWebhookHandler::Handle(const HttpRequest& request) {
  if (request.method != "POST") {
    HttpResponse response = JsonError(405, "only POST is served here");
    response.headers.push_back({"Allow", "POST"});
    return response;
  }
  const std::string* event_header = request.Header("X-GitHub-Event");
  const std::string* delivery_header = request.Header("X-GitHub-Delivery");
  if (event_header == nullptr || event_header->empty() || delivery_header == nullptr ||
      delivery_header->empty()) {
    LogDelivery(request.remote_addr, event_header == nullptr ? "" : *event_header, "", "", 400,
                "refused", "missing X-GitHub-Event or X-GitHub-Delivery");
    return JsonError(400, "missing X-GitHub-Event or X-GitHub-Delivery header");
  }
  if (event_header->size() > kMaxEventNameBytes || delivery_header->size() > kMaxDeliveryIdBytes) {
    LogDelivery(request.remote_addr, "", "", "", 400, "refused",
                "oversized X-GitHub-Event or X-GitHub-Delivery");
    return JsonError(400, "X-GitHub-Event or X-GitHub-Delivery header too long");
  }
  const std::string& event = *event_header;
  const std::string& delivery_id = *delivery_header;

  // The signature first: nothing in the body is looked at until some project signed it.
  const std::string* signature = request.Header(kGithubSignatureHeader);
  if (signature == nullptr) {
    LogDelivery(request.remote_addr, event, delivery_id, "", 401, "refused", "no signature");
    return JsonError(401, "missing X-Hub-Signature-256 header");
  }
  absl::StatusOr<std::vector<WebhookProject>> projects = backend_->WebhookProjects();
  if (!projects.ok()) {
    int status = HttpStatusForBackendError(projects.status());
    LogDelivery(request.remote_addr, event, delivery_id, "", status, "refused",
                projects.status().ToString());
    return JsonError(status, "cannot list projects right now");
  }
  std::vector<WebhookProject> signers;
  for (WebhookProject& project : *projects) {
    if (VerifyGithubSignature(*signature, project.secret, request.body)) {
      signers.push_back(std::move(project));
    }
  }
  if (signers.empty()) {
    LogDelivery(request.remote_addr, event, delivery_id, "", 401, "refused", "bad signature");
    return JsonError(401, "signature matches no project's webhook secret");
  }

  {
    absl::MutexLock lock(&mu_);
    // A concurrent delivery of the same id finishes first; then its answer is ours.
    auto not_in_flight = [this, &delivery_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !in_flight_.contains(delivery_id);
    };
    mu_.Await(absl::Condition(&not_in_flight));
    if (std::optional<HttpResponse> earlier = answered_.Get(delivery_id)) {
      LogDelivery(request.remote_addr, event, delivery_id, signers.front().id, earlier->status,
                  "redelivery", "answered as before");
      return *std::move(earlier);
    }
    in_flight_.insert(delivery_id);
  }
  Outcome outcome = Process(event, delivery_id, signers, request);
  {
    absl::MutexLock lock(&mu_);
    if (outcome.response.status < 500) answered_.Put(delivery_id, outcome.response);
    in_flight_.erase(delivery_id);
  }
  LogDelivery(request.remote_addr, event, delivery_id, outcome.project_id, outcome.response.status,
              outcome.what, Detail(outcome.response));
  return outcome.response;
}

GithubWebhookHandler::Outcome GithubWebhookHandler::Process(
    const std::string& event, const std::string& delivery_id,
    const std::vector<WebhookProject>& signers, const HttpRequest& request) {
  const std::string* content_type = request.Header("Content-Type");
  if (content_type != nullptr &&
      !absl::StartsWithIgnoreCase(absl::StripLeadingAsciiWhitespace(*content_type),
                                  "application/json")) {
    return {JsonError(400, "set the webhook's content type to application/json"), "", "refused"};
  }
  absl::StatusOr<GithubDelivery> delivery = ParseGithubDelivery(event, request.body);
  if (!delivery.ok())
    return {JsonError(400, std::string(delivery.status().message())), "", "refused"};

  const WebhookProject* project = nullptr;
  for (const WebhookProject& signer : signers) {
    // An organisation's ping names no repository: the signature alone identifies the project.
    if (delivery->repository_urls.empty() ||
        RepositoryMatches(delivery->repository_urls, signer.repository_url)) {
      project = &signer;
      break;
    }
  }
  if (project == nullptr) {
    return {JsonError(404, absl::StrCat("repository ", delivery->repository_name,
                                        " is not the repository of the project that signed")),
            signers.front().id, "refused"};
  }
  return Act(delivery_id, *project, *delivery);
}

GithubWebhookHandler::Outcome GithubWebhookHandler::Act(const std::string& delivery_id,
                                                        const WebhookProject& project,
                                                        const GithubDelivery& delivery) {
  const std::string project_field = Field("project", project.id);
  switch (delivery.action) {
    case GithubAction::kPing:
      return {JsonAnswer(200, absl::StrCat("{", Field("status", "pong"), ",", project_field, ",",
                                           Field("zen", delivery.zen), "}")),
              project.id, "ping"};
    case GithubAction::kIgnore:
      return {JsonAnswer(202, absl::StrCat("{", Field("status", "ignored"), ",", project_field, ",",
                                           Field("reason", delivery.ignore_reason), "}")),
              project.id, "ignored"};
    case GithubAction::kPush: {
      PushEvent push;
      push.delivery_id = delivery_id;
      push.project_id = project.id;
      push.branch = delivery.branch;
      push.commit_sha = delivery.commit_sha;
      push.tree_id = delivery.tree_id;
      push.message = delivery.message;
      push.pusher = delivery.pusher;
      absl::StatusOr<std::string> deployment = backend_->Push(push);
      if (!deployment.ok()) {
        return {JsonError(HttpStatusForBackendError(deployment.status()),
                          std::string(deployment.status().message())),
                project.id, "refused"};
      }
      return {JsonAnswer(202, absl::StrCat("{", Field("status", "accepted"), ",", project_field,
                                           ",", Field("branch", delivery.branch), ",",
                                           Field("commit", delivery.commit_sha), ",",
                                           Field("deployment_id", *deployment), "}")),
              project.id, "push"};
    }
    case GithubAction::kDeleteBranch: {
      DeleteBranchEvent del;
      del.delivery_id = delivery_id;
      del.project_id = project.id;
      del.branch = delivery.branch;
      absl::Status status = backend_->DeleteBranch(del);
      if (!status.ok()) {
        return {JsonError(HttpStatusForBackendError(status), std::string(status.message())),
                project.id, "refused"};
      }
      return {JsonAnswer(202, absl::StrCat("{", Field("status", "accepted"), ",", project_field,
                                           ",", Field("action", "delete_branch"), ",",
                                           Field("branch", delivery.branch), "}")),
              project.id, "delete_branch"};
    }
  }
  return {JsonError(500, "internal error"), project.id, "refused"};
}

}  // namespace kiln::worker
