// A fixed pool of threads with a bounded queue. Work that may block (a synced commit, a store
// read) runs here rather than on gRPC's callback threads; a full queue refuses new work, so
// overload turns into a clear kResourceExhausted instead of unbounded memory. With `fibers` > 0
// the work runs on that many fibers over the threads (common/fiber.h): a wait that parks costs
// a stack switch, not a kernel context switch.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/fiber.h"

namespace kiln {

class Executor {
 public:
  // With a `registry`: kiln_executor_queued, _running (started, not finished: parked fibers
  // count), _workers, _queue_limit and _refused_total, labelled executor=`name`.
  Executor(std::string name, int threads, size_t max_queued, int fibers = 0,
           prometheus::Registry* registry = nullptr);
  // Runs what is queued, then joins the threads.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `work`; false when the queue is full or the executor is stopping.
  bool TrySubmit(std::function<void()> work);

  size_t queued();
  const std::string& name() const { return name_; }

 private:
  void Loop();
  bool Queue(std::function<void()> work);

  const std::string name_;
  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::unique_ptr<fiber::Pool> fibers_;  // set when the work runs on fibers
  // Set with a registry.
  prometheus::Gauge* queued_gauge_ = nullptr;
  prometheus::Gauge* running_gauge_ = nullptr;
  prometheus::Counter* refused_ = nullptr;
};

}  // namespace kiln
