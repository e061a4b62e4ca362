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

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/fiber.h"

namespace kiln {

class Executor {
 public:
  Executor(std::string name, int threads, size_t max_queued, int fibers = 0);
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

  const std::string name_;
  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::unique_ptr<fiber::Pool> fibers_;  // set when the work runs on fibers
};

}  // namespace kiln
