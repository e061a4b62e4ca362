// The process the kill -9 durability test starts and kills: it opens a RocksDbStore, commits
// crash_workload batches from several threads, and after each acknowledged commit writes
// (thread, index) as two native int64s to a pipe. Usage:
//   kiln_persistence_crash_writer <store dir> <round> <threads> <pipe fd>
// Exit codes: 2 store already open, 3 other open error, 4 commit failed, 5 pipe failed,
// 6 usage; 0 when it reaches kMaxCommitsPerThread without being killed.
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/persistence/crash_workload.h"
#include "orchestrator/persistence/rocksdb_store.h"

namespace {

// A bound on the run should the test never kill it.
constexpr int64_t kMaxCommitsPerThread = 5'000;

bool WriteAll(int fd, const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using kiln::orchestrator::RocksDbStore;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <store dir> <round> <threads> <pipe fd>\n", argv[0]);
    return 6;
  }
  const std::string path = argv[1];
  const int round = std::atoi(argv[2]);
  const int threads = std::atoi(argv[3]);
  const int fd = std::atoi(argv[4]);

  auto store = RocksDbStore::Open(path);
  if (!store.ok()) {
    std::fprintf(stderr, "crash writer: %s\n", store.status().ToString().c_str());
    return store.status().code() == absl::StatusCode::kFailedPrecondition ? 2 : 3;
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int64_t i = 0; i < kMaxCommitsPerThread; ++i) {
        absl::Status status =
            (*store)->Commit(kiln::orchestrator::crash_workload::Batch(round, t, i));
        if (!status.ok()) {
          std::fprintf(stderr, "crash writer: %s\n", status.ToString().c_str());
          std::_Exit(4);
        }
        // 16 bytes < PIPE_BUF: each record reaches the pipe whole, whatever the other threads do.
        const int64_t ack[2] = {t, i};
        if (!WriteAll(fd, ack, sizeof(ack))) std::_Exit(5);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  return 0;
}
