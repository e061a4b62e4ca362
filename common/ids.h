// Id generation, injected like the clock: request ids are UUIDv4 strings and run ids UUIDv7
// strings, from a seeded generator in tests (repeatable) and from a random seed in production.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln {

class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  // A random (version 4) UUID in its canonical 36-character form.
  virtual std::string NewUuid() = 0;
  // A time-ordered (version 7) UUID: its first 48 bits are `now` in milliseconds since the Unix
  // epoch, the other 74 free bits random, so ids made in a later millisecond sort after it.
  // Run ids are these: the rows of a run (its history, its state) are keyed by run id, and
  // keys that grow with time make each flushed file cover only recent key ranges, which
  // compaction then rewrites far less than files of random keys spread over the whole table.
  virtual std::string NewTimeOrderedUuid(absl::Time now) = 0;
};

// A thread-safe generator over a 64-bit Mersenne Twister. Seed it for repeatable ids.
class RandomIdGenerator final : public IdGenerator {
 public:
  // Seeds from std::random_device.
  RandomIdGenerator();
  explicit RandomIdGenerator(uint64_t seed);

  std::string NewUuid() override;
  std::string NewTimeOrderedUuid(absl::Time now) override;

 private:
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

// Formats 16 bytes as a version-4 UUID (sets the version and variant bits).
std::string FormatUuid(uint64_t hi, uint64_t lo);
// Formats `now` (milliseconds, clamped to 48 bits) and 74 bits of `random` as a version-7 UUID.
std::string FormatTimeOrderedUuid(absl::Time now, uint64_t random_hi, uint64_t random_lo);
// Whether `s` is a UUID in the canonical form FormatUuid writes (lower-case hex).
bool IsUuid(std::string_view s);

}  // namespace kiln
