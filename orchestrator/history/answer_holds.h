// Commits held for a workflow task's answer (HistoryEngine::Commit, "held for the answer";
// docs/fast-paths.md). A quiet transition that sends a workflow task out before its commit may
// hold that commit, with the run's lock, for a short while: when the task's completion arrives
// meanwhile, its transition runs at once on the holder's run (the holder, parked, lends it its
// lock and its state), and one synced write commits both. This is the rendezvous: the holder
// waits here for the completion or its deadline; the completion takes the holder's run here and
// gives it back when done.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fiber.h"
#include "orchestrator/history/run_cache.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace kiln::orchestrator {

class AnswerHolds {
 public:
  // `registry` (optional): kiln_engine_commit_holds_total{outcome="joined"|"missed"}.
  explicit AnswerHolds(prometheus::Registry* registry = nullptr);
  // Ends the holds still waiting (as at their deadline) and stops the deadline thread.
  ~AnswerHolds();
  AnswerHolds(const AnswerHolds&) = delete;
  AnswerHolds& operator=(const AnswerHolds&) = delete;

  // One holder's wait (on its stack), from Open to the end of Wait.
  class Holder {
   public:
    // The held run, locked by the holder: for the answer that took it, until it calls Return.
    RunCache::Handle& handle() const { return *handle_; }

   private:
    friend class AnswerHolds;
    std::string run_id_;
    int64_t scheduled_event_id_ = 0;
    RunCache::Handle* handle_ = nullptr;
    std::multimap<absl::Time, Holder*>::iterator at_;  // in deadlines_ while has_deadline_
    bool has_deadline_ = false;
    bool ended_ = false;  // by its deadline, or taken by its answer
    bool taken_ = false;
    bool waiting_ = false;            // in Wait: done with the run until woken
    fiber::Waiter* taker_ = nullptr;  // an answer that took the run before Wait, waiting for it
    fiber::Waiter woken_;             // at the deadline, or when the answer gives the run back
  };

  // The holder, its run's state and HeldCommit in place, before its task goes out (the answer
  // may come back at once): from now on the completion of run `run_id`'s workflow task
  // scheduled at `scheduled_event_id` may take `handle`. False (no hold) when the run has a
  // holder already, which its lock prevents.
  bool Open(Holder* holder, const std::string& run_id, int64_t scheduled_event_id,
            RunCache::Handle* handle);
  // Then waits until its answer took the run and gave it back (true), or `deadline` passed
  // first (false; the completion, when it comes, waits for the run's lock as any other). Parks
  // the calling fiber (inside a fiber::ParkScope), else blocks the thread.
  bool Wait(Holder* holder, absl::Time deadline);

  // The completion: the holder waiting for it, if any, whose run (holder->handle()) it then
  // runs on as if it held the lock, and gives back with Return. Null when none waits. Waits
  // (parks) until the holder is in Wait (done with its own work on the run).
  Holder* Take(const std::string& run_id, int64_t scheduled_event_id);
  void Return(Holder* holder);

  // Holds ended by their answer / by their deadline, since the start.
  int64_t joined() const { return joined_.load(std::memory_order_relaxed); }
  int64_t missed() const { return missed_.load(std::memory_order_relaxed); }

 private:
  void EndDeadline(Holder* holder) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deadlines();

  // holders_.size(), read without mu_ so that an answer with no holder anywhere (under load,
  // every answer) takes no lock.
  std::atomic<int> open_{0};
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
