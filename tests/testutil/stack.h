// Stack use on demand, for tests of code that must run on a stack of a given size.
#pragma once

#include <cstddef>
#include <cstring>

namespace kiln::testutil {

// Touches `bytes` of stack; the compiler may not shrink the array away.
[[gnu::noinline]] inline int UseStack(size_t bytes) {
  constexpr size_t kChunk = 64 << 10;
  volatile char chunk[kChunk];
  std::memset(const_cast<char*>(chunk), 1, kChunk);
  int sum = chunk[kChunk - 1];
  if (bytes > kChunk) sum += UseStack(bytes - kChunk);
  return sum;
}

}  // namespace kiln::testutil
