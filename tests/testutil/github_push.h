// What the platform's end-to-end test and benchmark send kiln-worker as GitHub would: push and
// delete deliveries shaped as GitHub documents them, signed with the project's webhook secret,
// and the deployment id the worker's 202 answer names. Shared so that the benchmark measures
// exactly the deliveries the e2e test proves correct.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tests/testutil/http.h"

namespace kiln::testutil {

// The "repository" object of a delivery for a repository cloned from `url`.
std::string GithubRepositoryJson(const std::string& url);

// A push of `branch` from `before` to `after` (tree `tree`) with one commit.
std::string GithubPushPayload(const std::string& url, const std::string& branch,
                              const std::string& before, const std::string& after,
                              const std::string& tree, const std::string& message);

// A branch's delete event.
std::string GithubDeletePayload(const std::string& url, const std::string& branch);

// POSTs `payload` to 127.0.0.1:port/webhooks/github as event `event`, delivery id `delivery`,
// signed (X-Hub-Signature-256) with `secret`. An error only when no answer came.
absl::StatusOr<HttpReply> DeliverGithubEvent(int port, const std::string& event,
                                             const std::string& delivery,
                                             const std::string& payload, const std::string& secret);

// The deployment id in a 202's JSON answer; "" when there is none.
std::string DeploymentIdIn(const std::string& body);

}  // namespace kiln::testutil
