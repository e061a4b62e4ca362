#include "common/fiber.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace kiln::fiber {

// A fiber stays on the thread that first ran it: code above a park may have cached the
// address of a thread_local (the compiler assumes a function never changes threads), and
// absl::Mutex expects to be unlocked where it was locked. Each thread owns its fibers.
struct Carrier {
  ucontext_t context;
  std::deque<Fiber*> ready;  // guarded by Pool::mu_
  std::vector<Fiber*> free;  // guarded by Pool::mu_
  size_t fibers = 0;
  // For the sanitizers: the thread's own stack (ASan learns it at the first switch) and its
  // TSan fiber.
  const void* stack_bottom = nullptr;
  size_t stack_size = 0;
  void* fake_stack = nullptr;
  void* tsan_fiber = nullptr;
};

struct Fiber {
  Pool* pool = nullptr;
  Carrier* carrier = nullptr;
  ucontext_t context;
  void* mapping = nullptr;
  size_t mapping_bytes = 0;
  std::function<void()> work;
  // Set by a fiber that parks: its thread unlocks this once the fiber is off the thread, so a
  // Notify (which needs the mutex) cannot come before the fiber can be resumed.
  absl::Mutex* release = nullptr;
  bool finished = false;  // its work ended: back to its carrier's free list
  int park_scopes = 0;
  // For the sanitizers: the fiber's stack, ASan's fake stack while switched out, its TSan fiber.
  const void* stack_bottom = nullptr;
  size_t stack_size = 0;
  void* fake_stack = nullptr;
  void* tsan_fiber = nullptr;

  ~Fiber() {
#if defined(__SANITIZE_THREAD__)
    if (tsan_fiber != nullptr) __tsan_destroy_fiber(tsan_fiber);
#endif
    if (mapping != nullptr) munmap(mapping, mapping_bytes);
  }

  // Back to the thread. Returns when the fiber is resumed.
  void SwitchOut() {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&fake_stack, carrier->stack_bottom, carrier->stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
    __tsan_switch_to_fiber(carrier->tsan_fiber, 0);
#endif
    swapcontext(&context, &carrier->context);
    Entered();
  }
  // Called on the fiber's stack each time it is switched to.
  void Entered() {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake_stack, &carrier->stack_bottom, &carrier->stack_size);
#endif
  }
  // Parks: `mu` (held) is unlocked once off the thread; returns when woken, without `mu`.
  void Park(absl::Mutex* mu) {
    release = mu;
    SwitchOut();
  }
};

namespace {
thread_local Fiber* current = nullptr;

[[noreturn]] void Trampoline() {
  Fiber* self = current;
  self->Entered();
  for (;;) {
    self->work();
    self->work = nullptr;
    self->finished = true;
    self->SwitchOut();
  }
}

size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// Apart, because getcontext "returns twice" and would make the caller's locals suspect.
[[gnu::noinline]] void MakeContext(ucontext_t* context, void* stack, size_t bytes) {
  getcontext(context);
  context->uc_stack.ss_sp = stack;
  context->uc_stack.ss_size = bytes;
  context->uc_link = nullptr;
  makecontext(context, Trampoline, 0);
}
}  // namespace

ParkScope::ParkScope() {
  if (current != nullptr) ++current->park_scopes;
}

ParkScope::~ParkScope() {
  if (current != nullptr) --current->park_scopes;
}

bool CanPark() { return current != nullptr && current->park_scopes > 0; }

void Waiter::Wait(absl::Mutex* mu) {
  if (CanPark()) {
    fiber_ = current;
    while (!notified_) {
      fiber_->Park(mu);
      mu->Lock();
    }
    return;
  }
  while (!notified_) cv_.Wait(mu);
}

void Waiter::Notify() {
  notified_ = true;
  if (fiber_ != nullptr) {
    fiber_->pool->MakeReady(fiber_);
  } else {
    cv_.Signal();
  }
}

void Mutex::Lock() {
  absl::MutexLock lock(&mu_);
  if (!locked_) {
    locked_ = true;
    return;
  }
  Waiter waiter;
  waiters_.push_back(&waiter);
  // A fiber parks here whatever the scope: the lock's holder may itself be parked (in its
  // commit) and needs the thread.
  ParkScope park;
  waiter.Wait(&mu_);
  // Unlock handed the lock over: locked_ stays true.
}

void Mutex::Unlock() {
  absl::MutexLock lock(&mu_);
  if (waiters_.empty()) {
    locked_ = false;
    return;
  }
  Waiter* next = waiters_.front();
  waiters_.pop_front();
  next->Notify();
}

Pool::Pool(int threads, int fibers, size_t max_queued) : max_queued_(max_queued) {
  if (threads < 1) threads = 1;
  if (fibers < threads) fibers = threads;
  const size_t page = PageSize();
  std::vector<Carrier*> carriers;
  carriers_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    carriers_.push_back(std::make_unique<Carrier>());
    carriers.push_back(carriers_.back().get());
  }
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < fibers; ++i) {
    auto fiber = std::make_unique<Fiber>();
    fiber->pool = this;
    fiber->carrier = carriers[static_cast<size_t>(i % threads)];
    fiber->mapping_bytes = kStackBytes + page;
    fiber->mapping = mmap(nullptr, fiber->mapping_bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (fiber->mapping == MAP_FAILED) std::abort();  // Out of address space at startup.
    mprotect(fiber->mapping, page, PROT_NONE);       // The guard: an overflow faults.
    fiber->stack_bottom = static_cast<char*>(fiber->mapping) + page;
    fiber->stack_size = kStackBytes;
    MakeContext(&fiber->context, static_cast<char*>(fiber->mapping) + page, kStackBytes);
#if defined(__SANITIZE_THREAD__)
    fiber->tsan_fiber = __tsan_create_fiber(0);
#endif
    fiber->carrier->free.push_back(fiber.get());
    ++fiber->carrier->fibers;
    fibers_.push_back(std::move(fiber));
  }
  for (Carrier* carrier : carriers) threads_.emplace_back([this, carrier] { Loop(carrier); });
}

Pool::~Pool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

bool Pool::TrySubmit(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || work_.size() >= max_queued_) return false;
  work_.push_back(std::move(work));
  return true;
}

size_t Pool::queued() {
  absl::MutexLock lock(&mu_);
  return work_.size();
}

void Pool::MakeReady(Fiber* fiber) {
  absl::MutexLock lock(&mu_);
  fiber->carrier->ready.push_back(fiber);
}

void Pool::Loop(Carrier* carrier) {
#if defined(__SANITIZE_THREAD__)
  carrier->tsan_fiber = __tsan_get_current_fiber();
#endif
  for (;;) {
    Fiber* fiber = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto runnable = [this, carrier]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !carrier->ready.empty() || (!work_.empty() && !carrier->free.empty()) ||
               (stopping_ && work_.empty() && carrier->free.size() == carrier->fibers);
      };
      mu_.Await(absl::Condition(&runnable));
      if (!carrier->ready.empty()) {
        fiber = carrier->ready.front();
        carrier->ready.pop_front();
      } else if (!work_.empty() && !carrier->free.empty()) {
        fiber = carrier->free.back();
        carrier->free.pop_back();
        fiber->work = std::move(work_.front());
        work_.pop_front();
      } else {
        return;  // Stopping: nothing queued, and every fiber of this thread is idle.
      }
    }
    current = fiber;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&carrier->fake_stack, fiber->stack_bottom, fiber->stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
    __tsan_switch_to_fiber(fiber->tsan_fiber, 0);
#endif
    swapcontext(&carrier->context, &fiber->context);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(carrier->fake_stack, nullptr, nullptr);
#endif
    current = nullptr;
    if (fiber->release != nullptr) {
      absl::Mutex* release = fiber->release;
      fiber->release = nullptr;
      release->Unlock();
    }
    if (fiber->finished) {
      fiber->finished = false;
      absl::MutexLock lock(&mu_);
      carrier->free.push_back(fiber);
    }
  }
}

}  // namespace kiln::fiber
