// A WebhookBackend for tests: a fixed project list, every call recorded, answers set by the
// test. Thread-safe (the HTTP server calls it from its threads).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "worker/http/webhook.h"

namespace kiln::worker {

class FakeWebhookBackend : public WebhookBackend {
 public:
  void SetProjects(std::vector<WebhookProject> projects) {
    absl::MutexLock lock(&mu_);
    projects_ = std::move(projects);
  }
  // What the next Push returns (an error, or the deployment id).
  void SetPushResult(absl::StatusOr<std::string> result) {
    absl::MutexLock lock(&mu_);
    push_result_ = std::move(result);
  }
  void SetDeleteResult(absl::Status status) {
    absl::MutexLock lock(&mu_);
    delete_result_ = std::move(status);
  }

  absl::StatusOr<std::vector<WebhookProject>> WebhookProjects() override {
    absl::MutexLock lock(&mu_);
    return projects_;
  }
  absl::StatusOr<std::string> Push(const PushEvent& event) override {
    absl::MutexLock lock(&mu_);
    pushes_.push_back(event);
    return push_result_;
  }
  absl::Status DeleteBranch(const DeleteBranchEvent& event) override {
    absl::MutexLock lock(&mu_);
    deletes_.push_back(event);
    return delete_result_;
  }

  std::vector<PushEvent> pushes() {
    absl::MutexLock lock(&mu_);
    return pushes_;
  }
  std::vector<DeleteBranchEvent> deletes() {
    absl::MutexLock lock(&mu_);
    return deletes_;
  }
  size_t calls() {
    absl::MutexLock lock(&mu_);
    return pushes_.size() + deletes_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<WebhookProject> projects_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<std::string> push_result_ ABSL_GUARDED_BY(mu_) = std::string("deployment-1");
  absl::Status delete_result_ ABSL_GUARDED_BY(mu_);
  std::vector<PushEvent> pushes_ ABSL_GUARDED_BY(mu_);
  std::vector<DeleteBranchEvent> deletes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::worker
