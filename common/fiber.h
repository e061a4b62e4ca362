// Fibers: many cooperative tasks on a few threads. The orchestrator's engine work blocks on two
// things, its run's lock and its synced commit; on a thread each block is a futex sleep and a
// kernel context switch, and those switches cost more CPU than the engine's logic (a VM makes
// the wake-ups dear). On a fiber the same waits switch stacks in user space and the thread goes
// on with other work.
//
// The rule that keeps fibers from deadlocking their threads: a fiber parks only where it holds
// no ordinary (absl) mutex. fiber::Mutex parks by design; a Waiter parks only inside a
// ParkScope, which its user opens where it knows no absl mutex is held. Everywhere else a wait
// blocks the whole thread, as before, and must be short.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln::fiber {

struct Fiber;
struct Carrier;
class Pool;

// While one is open on a fiber, Waiter::Wait parks the fiber instead of blocking its thread.
class ParkScope {
 public:
  ParkScope();
  ~ParkScope();
  ParkScope(const ParkScope&) = delete;
  ParkScope& operator=(const ParkScope&) = delete;
};

// Whether a Waiter::Wait here would park: on a fiber, inside a ParkScope. A blocking call can
// ask it to choose between handing its wait to another thread (and parking) and blocking its
// own thread, which a plain thread may do and a fiber outside a ParkScope must.
bool CanPark();

// A one-shot wake-up, guarded by a mutex of its user's: Wait and Notify are called with that
// mutex held. On a fiber inside a ParkScope, Wait parks the fiber; elsewhere it blocks the
// thread on a condition variable.
class Waiter {
 public:
  void Wait(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Notify();
  bool notified() const { return notified_; }

 private:
  Fiber* fiber_ = nullptr;
  bool notified_ = false;
  absl::CondVar cv_;
};

// A mutex that parks a fiber waiting for it (any thread may also take it, and blocks). Held
// across waits that park (a run's lock across its commit). FIFO hand-over: the unlocker hands
// the lock to the first waiter.
class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION();
  void Unlock() ABSL_UNLOCK_FUNCTION();

 private:
  absl::Mutex mu_;
  bool locked_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Waiter*> waiters_ ABSL_GUARDED_BY(mu_);
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// `threads` threads run up to `fibers` fibers; each fiber takes queued work and runs it to the
// end, parking where it waits. The queue is bounded: TrySubmit refuses work past `max_queued`.
class Pool {
 public:
  Pool(int threads, int fibers, size_t max_queued);
  // Runs what is queued and waits for every fiber to finish, then joins the threads.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  bool TrySubmit(std::function<void()> work);
  size_t queued();

  // Each fiber's stack (lazily committed memory, with a guard page below it).
  static constexpr size_t kStackBytes = 1 << 20;

 private:
  friend class Waiter;
  void Loop(Carrier* carrier);
  void MakeReady(Fiber* fiber);

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // One per thread: its fibers' ready and free lists (guarded by mu_).
  std::vector<std::unique_ptr<Carrier>> carriers_;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  std::vector<std::thread> threads_;
};

}  // namespace kiln::fiber
