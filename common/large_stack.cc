#include "common/large_stack.h"

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

namespace kiln {
namespace {

struct LargeStack {
  void* mapping = nullptr;
  size_t mapping_bytes = 0;
  ucontext_t caller;
  ucontext_t callee;
  const absl::FunctionRef<void()>* fn = nullptr;
  bool running = false;
  // For the sanitizers: the thread's own stack while switched away, and the fibers TSan knows.
  const void* thread_stack_bottom = nullptr;
  size_t thread_stack_size = 0;
  void* fake_stack = nullptr;
  void* tsan_fiber = nullptr;
  void* tsan_thread = nullptr;

  ~LargeStack() {
#if defined(__SANITIZE_THREAD__)
    if (tsan_fiber != nullptr) __tsan_destroy_fiber(tsan_fiber);
#endif
    if (mapping != nullptr) munmap(mapping, mapping_bytes);
  }
};

thread_local LargeStack stack;

void Entry() {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &stack.thread_stack_bottom, &stack.thread_stack_size);
#endif
  (*stack.fn)();
#if defined(__SANITIZE_ADDRESS__)
  // This stack is done with (its frames end here): nothing of it to keep.
  __sanitizer_start_switch_fiber(nullptr, stack.thread_stack_bottom, stack.thread_stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
  __tsan_switch_to_fiber(stack.tsan_thread, 0);
#endif
  // Returning follows uc_link back to the caller.
}

// Apart, because getcontext "returns twice" and would make the caller's locals suspect.
[[gnu::noinline]] void Prepare(size_t page) {
  getcontext(&stack.callee);
  stack.callee.uc_stack.ss_sp = static_cast<char*>(stack.mapping) + page;
  stack.callee.uc_stack.ss_size = kLargeStackBytes;
  stack.callee.uc_link = &stack.caller;
  makecontext(&stack.callee, Entry, 0);
}

}  // namespace

void RunOnLargeStack(absl::FunctionRef<void()> fn) {
  if (stack.running) {
    fn();
    return;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (stack.mapping == nullptr) {
    stack.mapping_bytes = kLargeStackBytes + page;
    void* mapping = mmap(nullptr, stack.mapping_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mapping == MAP_FAILED) {
      // Out of address space: the small stack is all there is.
      fn();
      return;
    }
    mprotect(mapping, page, PROT_NONE);  // The guard: an overflow faults.
    stack.mapping = mapping;
#if defined(__SANITIZE_THREAD__)
    stack.tsan_fiber = __tsan_create_fiber(0);
#endif
  }
  Prepare(page);
  stack.fn = &fn;
  stack.running = true;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(&stack.fake_stack, static_cast<char*>(stack.mapping) + page,
                                 kLargeStackBytes);
#endif
#if defined(__SANITIZE_THREAD__)
  stack.tsan_thread = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(stack.tsan_fiber, 0);
#endif
  swapcontext(&stack.caller, &stack.callee);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(stack.fake_stack, nullptr, nullptr);
#endif
  stack.running = false;
  stack.fn = nullptr;
}

}  // namespace kiln
