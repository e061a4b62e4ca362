// Commits held for a workflow task's answer (HistoryEngine::Commit, "held for the answer";
// docs/fast-paths.md). A quiet transition that sends a workflow task out before its commit may
// hold that commit, with the run's lock, for a short while: when the task's completion arrives
// meanwhile, its transition runs on the holder's fiber, on the holder's state, and one synced
// write commits both. This is the rendezvous: the holder waits here for the completion or its
// deadline; the completion finds its holder here, hands over its work and waits until it ran.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fiber.h"
#include "orchestrator/history/run_cache.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace kiln::orchestrator {

class AnswerHolds {
 public:
  // An answer handed to its holder: the holder calls Run once, with the run's handle.
  class Posted {
   public:
    void Run(RunCache::Handle& handle) { body_(handle); }

   private:
    friend class AnswerHolds;
    explicit Posted(absl::FunctionRef<void(RunCache::Handle&)> body) : body_(body) {}
    absl::FunctionRef<void(RunCache::Handle&)> body_;
    fiber::Waiter ran_;  // notified by Finish
  };

  // `registry` (optional): kiln_engine_commit_holds_total{outcome="joined"|"missed"}.
  explicit AnswerHolds(prometheus::Registry* registry = nullptr);
  // Ends the holds still waiting (as at their deadline) and stops the deadline thread.
  ~AnswerHolds();
  AnswerHolds(const AnswerHolds&) = delete;
  AnswerHolds& operator=(const AnswerHolds&) = delete;

  // One holder's wait (on its stack), between Open and Wait.
  class Holder {
   private:
    friend class AnswerHolds;
    std::string run_id;
    int64_t scheduled_event_id = 0;
    std::multimap<absl::Time, Holder*>::iterator at;  // in deadlines_ while waiting for it
    bool has_deadline = false;
    Posted* posted = nullptr;
    bool ended = false;
    fiber::Waiter woken;
  };
  // The holder, before its task goes out (its answer may come back at once): from now on the
  // completion of run `run_id`'s workflow task scheduled at `scheduled_event_id` is posted to
  // `holder`. False (no hold) when the run has a holder already, which its lock prevents.
  bool Open(Holder* holder, const std::string& run_id, int64_t scheduled_event_id);
  // Then waits until the completion is posted (returns it: call Run, then Finish) or `deadline`
  // passes (returns null; the completion, when it comes, waits for the run's lock as any other).
  // Parks the calling fiber (inside a fiber::ParkScope), else blocks the thread.
  Posted* Wait(Holder* holder, absl::Time deadline);
  // The holder, after Run: wakes the poster.
  void Finish(Posted* posted);

  // The completion: when a holder waits for it, hands `body` over, waits until the holder ran
  // it and returns true; false (nothing done) when none waits.
  bool Post(const std::string& run_id, int64_t scheduled_event_id,
            absl::FunctionRef<void(RunCache::Handle&)> body);

  // Holds ended by their answer / by their deadline, since the start.
  int64_t joined() const { return joined_.load(std::memory_order_relaxed); }
  int64_t missed() const { return missed_.load(std::memory_order_relaxed); }

 private:
  // Ends `holder`'s wait, with `posted` or (null) at its deadline.
  void End(Holder* holder, Posted* posted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deadlines();

  absl::Mutex mu_;
  // The waiting holders by run (a run has one at most: the holder holds its lock).
  absl::flat_hash_map<std::string, Holder*> holders_ ABSL_GUARDED_BY(mu_);
  // Their deadlines, for the thread that ends them.
  std::multimap<absl::Time, Holder*> deadlines_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar deadlines_changed_;
  std::atomic<int64_t> joined_{0};
  std::atomic<int64_t> missed_{0};
  prometheus::Counter* joined_counter_ = nullptr;
  prometheus::Counter* missed_counter_ = nullptr;
  std::thread deadline_thread_;
};

}  // namespace kiln::orchestrator
