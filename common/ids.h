// Id generation, injected like the clock: run ids and request ids are UUIDv4 strings from a
// seeded generator in tests (repeatable) and from a random seed in production.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln {

class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  // A random (version 4) UUID in its canonical 36-character form.
  virtual std::string NewUuid() = 0;
};

// A thread-safe generator over a 64-bit Mersenne Twister. Seed it for repeatable ids.
class RandomIdGenerator final : public IdGenerator {
 public:
  // Seeds from std::random_device.
  RandomIdGenerator();
  explicit RandomIdGenerator(uint64_t seed);

  std::string NewUuid() override;

 private:
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

// Formats 16 bytes as a version-4 UUID (sets the version and variant bits).
std::string FormatUuid(uint64_t hi, uint64_t lo);
// Whether `s` is a UUID in the canonical form FormatUuid writes (lower-case hex).
bool IsUuid(std::string_view s);

}  // namespace kiln
