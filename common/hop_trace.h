#pragma once
// Per-hop timestamps across processes, for finding where a workflow's time goes between the
// caller, the orchestrator and the workers (docs/benchmarks-history.md, "Where a sequential
// decoupled workflow's time goes"; bench/engine/hops.py reads the files).
//
// Off unless KILN_HOP_TRACE names a path prefix when the process starts: then each Mark appends
// "<CLOCK_MONOTONIC ns> <thread id> <tag>" to <prefix>.<pid> with one write(2) (about 2 µs, so
// a traced run is a little slower than an untraced one). The monotonic clock is the same for
// every process of the machine, so the files of a run merge into one timeline. Off, a Mark is
// a load and a branch. A file stops growing at kMaxHopTraceBytes.
#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kiln::hoptrace {

inline constexpr int64_t kMaxHopTraceBytes = int64_t{256} << 20;

namespace internal {
struct File {
  int fd = -1;
  std::atomic<int64_t> bytes{0};
  File() {
    const char* prefix = std::getenv("KILN_HOP_TRACE");
    if (prefix == nullptr || *prefix == '\0') return;
    const std::string path = std::string(prefix) + "." + std::to_string(::getpid());
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    // Asked for and not possible: say so once, rather than leave an empty trace unexplained.
    if (fd < 0) {
      std::fprintf(stderr, "KILN_HOP_TRACE: cannot open %s: %s\n", path.c_str(),
                   std::strerror(errno));
    }
  }
};
inline File& TraceFile() {
  static File file;
  return file;
}
}  // namespace internal

// `tag` names the point: "<process>.<what>", e.g. "o.commit.synced" (o orchestrator, w a
// worker, c a caller).
inline void Mark(const char* tag) {
  internal::File& file = internal::TraceFile();
  if (file.fd < 0) return;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  char line[128];
  const int n = std::snprintf(line, sizeof line, "%lld %ld %s\n",
                              static_cast<long long>(now.tv_sec) * 1'000'000'000LL + now.tv_nsec,
                              static_cast<long>(::syscall(SYS_gettid)), tag);
  if (n <= 0 || file.bytes.fetch_add(n, std::memory_order_relaxed) + n > kMaxHopTraceBytes) return;
  // A lost line only thins the trace: nothing to do about a failed write.
  (void)!::write(file.fd, line, static_cast<size_t>(n));
}

}  // namespace kiln::hoptrace
