#include "common/executor.h"

namespace kiln {

Executor::Executor(std::string name, int threads, size_t max_queued, int fibers,
                   prometheus::Registry* registry)
    : name_(std::move(name)), max_queued_(max_queued) {
  if (registry != nullptr) {
    const prometheus::Labels labels{{"executor", name_}};
    queued_gauge_ = &prometheus::BuildGauge()
                         .Name("kiln_executor_queued")
                         .Help("Work queued, waiting for a worker (a fiber or a thread)")
                         .Register(*registry)
                         .Add(labels);
    running_gauge_ = &prometheus::BuildGauge()
                          .Name("kiln_executor_running")
                          .Help("Work started and not finished (parked fibers included)")
                          .Register(*registry)
                          .Add(labels);
    prometheus::BuildGauge()
        .Name("kiln_executor_workers")
        .Help("Fibers, or threads where the work runs on threads")
        .Register(*registry)
        .Add(labels)
        .Set(fibers > 0 ? fibers : threads);
    prometheus::BuildGauge()
        .Name("kiln_executor_queue_limit")
        .Help("Work queued past this is refused")
        .Register(*registry)
        .Add(labels)
        .Set(static_cast<double>(max_queued));
    refused_ = &prometheus::BuildCounter()
                    .Name("kiln_executor_refused_total")
                    .Help("Work refused: the queue was full or the executor stopping")
                    .Register(*registry)
                    .Add(labels);
  }
  if (fibers > 0) {
    fibers_ = std::make_unique<fiber::Pool>(threads, fibers, max_queued);
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
  if (queued_gauge_ != nullptr) {
    queued_gauge_->Increment();  // Before it can start, so that the gauges never go below 0.
    work = [this, work = std::move(work)] {
      queued_gauge_->Decrement();
      running_gauge_->Increment();
      work();
      running_gauge_->Decrement();
    };
  }
  if (Queue(std::move(work))) return true;
  if (queued_gauge_ != nullptr) {
    queued_gauge_->Decrement();
    refused_->Increment();
  }
  return false;
}

bool Executor::Queue(std::function<void()> work) {
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
