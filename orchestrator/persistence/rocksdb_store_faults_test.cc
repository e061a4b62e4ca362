// The store when writing fails: a failed WAL write, a failed flush, a database that cannot be
// opened for writing, and a really full filesystem. In each, writes stop with kUnavailable and
// the reason, reads go on, nothing aborts (RocksDB 7.8 asserts on a WAL write after a failed
// one: the store must never make one), and writes resume by themselves once the fault is gone.
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "orchestrator/persistence/rocksdb_store.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "tests/testutil/process.h"

namespace kiln::orchestrator {
namespace {

// A FileSystem whose writes fail with "no space" while `full` is set: creating a file, and
// appending to or syncing one already open (the WAL, a table file being flushed).
class FullDiskFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit FullDiskFs(std::shared_ptr<rocksdb::FileSystem> base)
      : rocksdb::FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "FullDiskFs"; }

  std::atomic<bool> full{false};

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (full) return rocksdb::IOStatus::NoSpace("injected", name);
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus status = target()->NewWritableFile(name, options, &file, dbg);
    if (status.ok()) *result = std::make_unique<File>(std::move(file), &full);
    return status;
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> file, const std::atomic<bool>* full)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), full_(full) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      if (*full_) return rocksdb::IOStatus::NoSpace("injected append");
      return target()->Append(data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      if (*full_) return rocksdb::IOStatus::NoSpace("injected append");
      return target()->Append(data, options, info, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      if (*full_) return rocksdb::IOStatus::NoSpace("injected sync");
      return target()->Sync(options, dbg);
    }

   private:
    const std::atomic<bool>* full_;
  };
};

// Records every health change the store reports.
struct HealthLog {
  std::mutex mu;
  std::vector<StoreHealth> changes;
  std::function<void(const StoreHealth&)> Callback() {
    return [this](const StoreHealth& health) {
      std::lock_guard<std::mutex> lock(mu);
      changes.push_back(health);
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return changes.size();
  }
};

struct FaultyStore {
  std::shared_ptr<FullDiskFs> fs = std::make_shared<FullDiskFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  HealthLog health;

  RocksDbOptions Options() {
    RocksDbOptions options;
    options.env = env.get();
    options.min_free_bytes = 0;
    options.recovery_interval = absl::Milliseconds(10);
    options.on_health_change = health.Callback();
    return options;
  }
};

absl::Status Put(Store& store, const std::string& key, const std::string& value = "v") {
  WriteBatch batch;
  batch.Put(Table::kHistory, key, value);
  return store.Commit(batch);
}

std::optional<std::string> Read(Store& store, const std::string& key) {
  auto value = store.Get(Table::kHistory, key);
  INFO(value.status().ToString());
  REQUIRE(value.ok());
  return *value;
}

bool WaitWritable(Store& store) {
  return testutil::WaitFor([&] { return store.Health().writable; }, absl::Seconds(20));
}

TEST_CASE("A failed WAL write stops writes and they resume by themselves once writes work") {
  testutil::TempDir dir;
  FaultyStore faulty;
  auto opened = RocksDbStore::Open(dir.path() + "/db", faulty.Options());
  REQUIRE(opened.ok());
  RocksDbStore& store = **opened;
  REQUIRE(Put(store, "before").ok());
  REQUIRE(store.Health().writable);

  faulty.fs->full = true;
  absl::Status failed = Put(store, "failing");
  INFO(failed.ToString());
  CHECK(failed.code() == absl::StatusCode::kUnavailable);
  StoreHealth health = store.Health();
  CHECK_FALSE(health.writable);
  CHECK(absl::StrContains(health.reason, "injected"));
  CHECK(health.since != absl::InfinitePast());
  // Refused without going near RocksDB (the next WAL write would abort the process), however
  // many times; reads go on.
  for (int i = 0; i < 20; ++i) {
    absl::Status refused = Put(store, absl::StrCat("refused-", i));
    CHECK(refused.code() == absl::StatusCode::kUnavailable);
    CHECK(absl::StrContains(refused.message(), "refuses writes"));
    CHECK(absl::StrContains(refused.message(), "injected"));
  }
  CHECK(Read(store, "before") == "v");
  CHECK(faulty.health.size() >= 1);

  faulty.fs->full = false;
  REQUIRE(WaitWritable(store));
  REQUIRE(Put(store, "after").ok());
  CHECK(Read(store, "before") == "v");
  CHECK(Read(store, "after") == "v");
  CHECK(Read(store, "refused-0") == std::nullopt);
  CHECK(faulty.health.changes.back().writable);
}

TEST_CASE("A failed flush stops writes and a reopen resumes them once the disk has room") {
  testutil::TempDir dir;
  FaultyStore faulty;
  auto opened = RocksDbStore::Open(dir.path() + "/db", faulty.Options());
  REQUIRE(opened.ok());
  RocksDbStore& store = **opened;
  for (int i = 0; i < 100; ++i) REQUIRE(Put(store, absl::StrCat("k", i)).ok());

  faulty.fs->full = true;
  CHECK_FALSE(store.Flush().ok());
  // The flush's error reached the store before any commit did.
  StoreHealth health = store.Health();
  CHECK_FALSE(health.writable);
  CHECK(absl::StrContains(health.reason, "RocksDB stopped writes after a background error"));
  absl::Status refused = Put(store, "refused");
  CHECK(refused.code() == absl::StatusCode::kUnavailable);
  CHECK(Read(store, "k7") == "v");

  faulty.fs->full = false;
  REQUIRE(WaitWritable(store));
  REQUIRE(Put(store, "after").ok());
  CHECK(Read(store, "k99") == "v");
  CHECK(Read(store, "after") == "v");
}

TEST_CASE("A store that cannot be opened for writing opens read-only and reopens for writing") {
  testutil::TempDir dir;
  FaultyStore faulty;
  const std::string path = dir.path() + "/db";
  {
    auto store = RocksDbStore::Open(path, faulty.Options());
    REQUIRE(store.ok());
    REQUIRE(Put(**store, "kept").ok());
  }
  faulty.fs->full = true;
  auto opened = RocksDbStore::Open(path, faulty.Options());
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  RocksDbStore& store = **opened;
  CHECK_FALSE(store.Health().writable);
  CHECK(absl::StrContains(store.Health().reason, "could not be opened for writing"));
  CHECK(Read(store, "kept") == "v");
  CHECK(Put(store, "refused").code() == absl::StatusCode::kUnavailable);

  faulty.fs->full = false;
  REQUIRE(WaitWritable(store));
  REQUIRE(Put(store, "after").ok());
  CHECK(Read(store, "kept") == "v");
  CHECK(Read(store, "after") == "v");
}

// A tmpfs of its own, when this process may mount one (root); unmounted on destruction.
class SmallFilesystem {
 public:
  explicit SmallFilesystem(const std::string& dir, int size_mib) : dir_(dir) {
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0,
                       absl::StrCat("size=", size_mib, "m").c_str()) == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

  // Writes a file of zeros until the filesystem is full or `bytes` are written.
  void Fill(const std::string& name, uint64_t bytes = UINT64_MAX) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    const std::string chunk(64 << 10, '\0');
    for (uint64_t written = 0; written < bytes && out.write(chunk.data(), chunk.size());
         written += chunk.size()) {
      out.flush();
    }
  }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST_CASE("On a really full filesystem writes stop without an abort and resume when it has room") {
  testutil::TempDir dir;
  SmallFilesystem small(dir.path(), 32);
  if (!small.mounted()) {
    WARN("cannot mount a tmpfs here (not root?): the full-filesystem case is not run");
    return;
  }
  RocksDbOptions options;
  options.min_free_bytes = 0;  // Meet the full disk in RocksDB itself.
  options.recovery_interval = absl::Milliseconds(20);
  auto opened = RocksDbStore::Open(dir.path() + "/db", options);
  REQUIRE(opened.ok());
  RocksDbStore& store = **opened;
  REQUIRE(Put(store, "before").ok());
  small.Fill("filler");
  const std::string value(16 << 10, 'x');
  absl::Status status;
  for (int i = 0; i < 10'000 && status.ok(); ++i) status = Put(store, absl::StrCat("k", i), value);
  INFO(status.ToString());
  REQUIRE(status.code() == absl::StatusCode::kUnavailable);
  CHECK_FALSE(store.Health().writable);
  CHECK(absl::StrContains(store.Health().reason, "No space left on device"));
  CHECK(Put(store, "refused").code() == absl::StatusCode::kUnavailable);
  CHECK(Read(store, "before") == "v");

  std::filesystem::remove(dir.path() + "/filler");
  REQUIRE(WaitWritable(store));
  REQUIRE(Put(store, "after").ok());
  CHECK(Read(store, "after") == "v");
}

TEST_CASE("Writes stop while free space is below the reserve and resume above it") {
  testutil::TempDir dir;
  SmallFilesystem small(dir.path(), 32);
  if (!small.mounted()) {
    WARN("cannot mount a tmpfs here (not root?): the reserve case is not run");
    return;
  }
  RocksDbOptions options;
  options.min_free_bytes = 8 << 20;
  options.recovery_interval = absl::Milliseconds(20);
  auto opened = RocksDbStore::Open(dir.path() + "/db", options);
  REQUIRE(opened.ok());
  RocksDbStore& store = **opened;
  REQUIRE(Put(store, "before").ok());
  small.Fill("filler", 28 << 20);  // leaves less than the reserve
  // Free space is looked at every 100 ms at most: a few writes may still pass.
  REQUIRE(testutil::WaitFor([&] { return !Put(store, "probe").ok(); }, absl::Seconds(10)));
  StoreHealth health = store.Health();
  CHECK_FALSE(health.writable);
  CHECK(absl::StrContains(health.reason, "nearly full"));
  CHECK(Read(store, "before") == "v");

  std::filesystem::remove(dir.path() + "/filler");
  REQUIRE(WaitWritable(store));
  REQUIRE(Put(store, "after").ok());
}

}  // namespace
}  // namespace kiln::orchestrator
