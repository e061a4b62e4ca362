// Running a call on a bigger stack than its thread's. civetweb starts its request threads with
// the stack size it was built with (about 100 KB in Debian's package), and a handler that sets
// up a gRPC channel or reads a large protobuf can overflow that: kiln-worker crashed on the
// console's first call that way. The HTTP server runs every handler through RunOnLargeStack.
#pragma once

#include <cstddef>

#include "absl/functional/function_ref.h"

namespace kiln {

inline constexpr size_t kLargeStackBytes = size_t{8} << 20;

// Runs `fn` on this thread, switched onto a stack of kLargeStackBytes (lazily committed memory
// with a guard page below it, one per thread, kept for the thread's next call) and back. A call
// made while already on that stack runs directly. `fn` must not throw: nothing may unwind
// across the switch (an exception escaping it ends the process).
void RunOnLargeStack(absl::FunctionRef<void()> fn);

}  // namespace kiln
