#include "common/executor.h"

namespace kiln {

Executor::Executor(std::string name, int threads, size_t max_queued, int fibers)
    : name_(std::move(name)), max_queued_(max_queued) {
  if (fibers > 0) {
    fibers_ = std::make_unique<fiber::Pool>(name_, threads, fibers, max_queued);
    return;
  }
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

Executor::~Executor() {
  fibers_.reset();  // Runs what is queued, then joins.
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

bool Executor::TrySubmit(std::function<void()> work) {
  if (fibers_) return fibers_->TrySubmit(std::move(work));
  absl::MutexLock lock(&mu_);
  if (stopping_ || queue_.size() >= max_queued_) return false;
  queue_.push_back(std::move(work));
  return true;
}

size_t Executor::queued() {
  if (fibers_) return fibers_->queued();
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Executor::Loop() {
  for (;;) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // Stopping, and everything queued has run.
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace kiln
