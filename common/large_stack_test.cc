#include "common/large_stack.h"

#include <catch2/catch.hpp>

#include <pthread.h>

#include "tests/testutil/stack.h"

namespace kiln {
namespace {

using testutil::UseStack;

struct SmallThread {
  int result = 0;
  bool nested_ok = false;
};

void* OnSmallStack(void* arg) {
  auto* t = static_cast<SmallThread*>(arg);
  // 2 MB on a thread of 128 KB: without the switch this faults.
  RunOnLargeStack([&] { t->result = UseStack(2 << 20); });
  // Twice (the stack is reused), and nested (runs directly).
  RunOnLargeStack([&] { RunOnLargeStack([&] { t->nested_ok = UseStack(1 << 20) > 0; }); });
  return nullptr;
}

TEST_CASE("RunOnLargeStack runs deep calls on a thread with a small stack") {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 << 10);
  SmallThread t;
  pthread_t thread;
  REQUIRE(pthread_create(&thread, &attr, &OnSmallStack, &t) == 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  CHECK(t.result == 32);  // one per 64 KB chunk
  CHECK(t.nested_ok);
}

}  // namespace
}  // namespace kiln
