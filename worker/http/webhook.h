// GitHub webhooks: POST /webhooks/github on the worker's HTTP port. A delivery is checked
// before anything in it is parsed: its X-Hub-Signature-256 must be the HMAC-SHA256 of the raw
// body under the webhook secret of some project (compared in constant time). Then:
//   ping                      200
//   push to refs/heads/<b>    Push (a deployment), 202 with its id
//   push deleting a branch    DeleteBranch, 202
//   delete (ref_type branch)  DeleteBranch, 202
//   tags                      202, ignored (said so in the answer)
// and refused, starting nothing: another event (400), a bad or missing signature (401), a
// repository that is not the signing project's (404), a body over the limit (413), malformed
// JSON or a payload missing what the event needs (400). Every answer is JSON: {"error": …}
// or what was done. A delivery id seen before gets the answer it got then (the backend is
// idempotent on it too, for redeliveries after a restart).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::worker {

struct WebhookProject {
  std::string id;
  std::string repository_url;
  std::string secret;
};

struct PushEvent {
  std::string delivery_id;  // X-GitHub-Delivery
  std::string project_id;
  std::string branch;       // Without refs/heads/.
  std::string commit_sha;   // "after"
  std::string tree_id;      // head_commit.tree_id (may be empty)
  std::string message;      // head_commit.message, first line
  std::string pusher;       // pusher.name
};

struct DeleteBranchEvent {
  std::string delivery_id;
  std::string project_id;
  std::string branch;
};

// What the webhook endpoint drives: the platform (BuildService's implementation).
class WebhookBackend {
 public:
  virtual ~WebhookBackend() = default;
  // Every project with a webhook secret (bounded by the platform's project limit).
  virtual absl::StatusOr<std::vector<WebhookProject>> WebhookProjects() = 0;
  // Starts (or finds, for a delivery seen before) the deployment; returns its id. Errors map to
  // HTTP: kNotFound 404, kInvalidArgument 422, kFailedPrecondition 409, kUnavailable 503,
  // anything else 500.
  virtual absl::StatusOr<std::string> Push(const PushEvent& event) = 0;
  virtual absl::Status DeleteBranch(const DeleteBranchEvent& event) = 0;
};

}  // namespace kiln::worker
