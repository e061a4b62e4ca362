#include "common/ids.h"

#include <cstdio>

namespace kiln {

RandomIdGenerator::RandomIdGenerator() {
  std::random_device device;
  rng_.seed((static_cast<uint64_t>(device()) << 32) ^ device());
}

RandomIdGenerator::RandomIdGenerator(uint64_t seed) : rng_(seed) {}

std::string RandomIdGenerator::NewUuid() {
  uint64_t hi, lo;
  {
    absl::MutexLock lock(&mu_);
    hi = rng_();
    lo = rng_();
  }
  return FormatUuid(hi, lo);
}

std::string FormatUuid(uint64_t hi, uint64_t lo) {
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[37];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return std::string(buf, 36);
}

}  // namespace kiln
