#include "common/ids.h"

#include <algorithm>
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

std::string RandomIdGenerator::NewTimeOrderedUuid(absl::Time now) {
  uint64_t hi, lo;
  {
    absl::MutexLock lock(&mu_);
    hi = rng_();
    lo = rng_();
  }
  return FormatTimeOrderedUuid(now, hi, lo);
}

namespace {

std::string Format(uint64_t hi, uint64_t lo) {
  char buf[37];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return std::string(buf, 36);
}

}  // namespace

std::string FormatUuid(uint64_t hi, uint64_t lo) {
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  return Format(hi, lo);
}

std::string FormatTimeOrderedUuid(absl::Time now, uint64_t random_hi, uint64_t random_lo) {
  constexpr uint64_t kMaxMillis = (uint64_t{1} << 48) - 1;
  const int64_t millis = absl::ToUnixMillis(now);
  const uint64_t stamp = millis < 0 ? 0 : std::min(static_cast<uint64_t>(millis), kMaxMillis);
  const uint64_t hi = (stamp << 16) | 0x7000 | (random_hi & 0x0fff);  // version 7
  const uint64_t lo = (random_lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return Format(hi, lo);
}

bool IsUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    const char c = s[i];
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace kiln
