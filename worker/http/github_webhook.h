// The handler behind POST /webhooks/github: the answers webhook.h specifies, in this order:
//   1. not POST: 405. No X-GitHub-Event or X-GitHub-Delivery (or one over its limit): 400.
//   2. X-Hub-Signature-256 checked against every project's secret (WebhookProjects) on the raw
//      body: none matches, or no header: 401. Nothing has been parsed yet.
//   3. A delivery id answered before (and remembered) gets that answer again, backend untouched.
//      Deliveries with the same id wait for each other, so only one reaches the backend.
//   4. Content type other than application/json, malformed JSON, an unsupported event, a
//      payload missing what its event needs: 400.
//   5. The payload's repository must be a signing project's (several projects may share a
//      secret): otherwise 404.
//   6. ping 200; tag or other non-branch ref 202 ignored; push 202 with the deployment id;
//      branch deletion (push with deleted/after=0…0, or delete event) 202.
// Backend errors: kNotFound 404, kInvalidArgument 422, kFailedPrecondition 409, kUnavailable 503,
// else 500. Every answer from step 3 on is remembered except 5xx ones, which a redelivery
// should retry. Each delivery is logged (remote address, event, delivery, project, status,
// outcome); secrets and bodies never are. Thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "worker/http/delivery_cache.h"
#include "worker/http/github_payload.h"
#include "worker/http/http_server.h"
#include "worker/http/webhook.h"

namespace kiln::worker {

inline constexpr std::string_view kGithubWebhookPath = "/webhooks/github";
inline constexpr size_t kMaxDeliveryIdBytes = 128;
inline constexpr size_t kMaxEventNameBytes = 64;

// The HTTP status a backend error maps to (webhook.h).
int HttpStatusForBackendError(const absl::Status& status);

class GithubWebhookHandler {
 public:
  // `backend` must outlive the handler.
  GithubWebhookHandler(WebhookBackend* backend, size_t delivery_cache_entries);

  HttpResponse Handle(const HttpRequest& request);

 private:
  struct Outcome {
    HttpResponse response;
    std::string project_id;
    std::string what;  // For the log: push, delete_branch, ignored, ping, refused.
  };
  Outcome Process(const std::string& event, const std::string& delivery_id,
                  const std::vector<WebhookProject>& signers, const HttpRequest& request);
  Outcome Act(const std::string& delivery_id, const WebhookProject& project,
              const GithubDelivery& delivery);

  WebhookBackend* const backend_;
  absl::Mutex mu_;
  DeliveryCache answered_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::worker
