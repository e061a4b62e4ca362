// Source cache tests against real git repositories (made with the git CLI), over the local
// transport and over smart HTTP (git http-backend behind a small server checking Basic auth).
#include "builder-agent/git/source_cache.h"

#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "builder-agent/git/repack.h"
#include "builder-agent/git/smart_http_server.h"
#include "tests/testutil/git_require.h"
#include "tests/testutil/process.h"

namespace kiln::builder {
namespace {

namespace fs = std::filesystem;
using testutil::TempDir;

using testutil::RequireGit;

using testutil::WriteFile;
std::string ReadFile(const std::string& path) { return testutil::ReadFile(path); }

// A real (non-bare) git repository standing in for the remote.
class Origin {
 public:
  Origin() : path_(tmp_.path() + "/origin") {
    fs::create_directories(path_);
    RequireGit(path_, {"init", "-q", "-b", "main"});
  }
  const std::string& path() const { return path_; }
  void Write(const std::string& file, const std::string& content) {
    WriteFile(path_ + "/" + file, content);
  }
  std::string Commit(const std::string& message) {
    RequireGit(path_, {"add", "-A"});
    RequireGit(path_, {"commit", "-q", "--allow-empty", "-m", message});
    return RequireGit(path_, {"rev-parse", "HEAD"});
  }
  std::string Git(std::vector<std::string> args) { return RequireGit(path_, std::move(args)); }

 private:
  TempDir tmp_;
  std::string path_;
};

struct FileId {
  ino_t inode;
  int64_t mtime_ns;
  bool operator==(const FileId&) const = default;
};

FileId Identify(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return {st.st_ino, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

std::unique_ptr<SourceCache> NewCache(const std::string& root, SourceCacheOptions options = {}) {
  auto cache = SourceCache::Create(root, options);
  REQUIRE(cache.ok());
  return std::move(*cache);
}

GitFetchResult MustFetch(SourceCache& cache, const std::string& url, const std::string& revision,
                         const std::string& token = "") {
  auto result = cache.Fetch({url, revision, token, {}}, {}, {});
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  return *result;
}

absl::Status FetchStatus(SourceCache& cache, const std::string& url, const std::string& revision,
                         const std::string& token = "") {
  return cache.Fetch({url, revision, token, {}}, {}, {}).status();
}

// Every regular file under `root` — the whole cache on the volume.
bool AnyFileContains(const std::string& root, const std::string& needle) {
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file() && absl::StrContains(ReadFile(entry.path()), needle)) {
      return true;
    }
  }
  return false;
}

TEST_CASE(
    "Source cache: a cold fetch mirrors and checks out and a warm fetch of one commit is "
    "incremental",
    "[git]") {
  Origin origin;
  for (int i = 0; i < 30; ++i) origin.Write(absl::StrCat("lib/file", i, ".txt"), std::to_string(i));
  origin.Write("src/app.txt", "v1");
  origin.Write("README", "readme");
  std::string first = origin.Commit("first");
  TempDir volume;
  auto cache = NewCache(volume.path() + "/git");

  std::vector<GitFetchProgress> progress;
  auto cold = cache->Fetch({"file://" + origin.path(), "main", "", {}},
                           [&](const GitFetchProgress& p) { progress.push_back(p); }, {});
  REQUIRE(cold.ok());
  CHECK(cold->mirror_created);
  CHECK_FALSE(cold->fetch_skipped);
  CHECK(cold->commit_sha == first);
  CHECK(cold->received_objects >= 33);
  CHECK(cold->received_bytes > 0);
  CHECK(cold->files_written == 32);
  REQUIRE_FALSE(progress.empty());
  CHECK(progress.back().received_objects == cold->received_objects);
  CHECK(fs::path(cold->worktree_dir).is_absolute());
  CHECK(ReadFile(cold->worktree_dir + "/src/app.txt") == "v1");
  CHECK_FALSE(fs::exists(cold->worktree_dir + "/.git"));  // the build context has no .git
  FileId readme = Identify(cold->worktree_dir + "/README");
  FileId lib = Identify(cold->worktree_dir + "/lib/file7.txt");

  origin.Write("src/app.txt", "v2");
  std::string second = origin.Commit("second");
  GitFetchResult warm = MustFetch(*cache, "file://" + origin.path(), "main");
  CHECK_FALSE(warm.mirror_created);
  CHECK(warm.commit_sha == second);
  CHECK(warm.worktree_dir == cold->worktree_dir);
  // commit + root tree + src tree + blob: only the new objects travel.
  CHECK(warm.received_objects > 0);
  CHECK(warm.received_objects <= 5);
  CHECK(warm.files_written == 1);
  CHECK(ReadFile(warm.worktree_dir + "/src/app.txt") == "v2");
  // Unchanged files are not rewritten: podman's COPY cache sees the same files.
  CHECK(Identify(warm.worktree_dir + "/README") == readme);
  CHECK(Identify(warm.worktree_dir + "/lib/file7.txt") == lib);

  // The same repository by plain path shares the mirror.
  GitFetchResult by_path = MustFetch(*cache, origin.path() + "/", "main");
  CHECK_FALSE(by_path.mirror_created);
  CHECK(by_path.worktree_dir == warm.worktree_dir);
  CHECK(by_path.received_objects == 0);
}

TEST_CASE("Source cache: checkout restores tampered files and removes untracked and ignored ones",
          "[git]") {
  Origin origin;
  origin.Write(".gitignore", "*.log\n");
  origin.Write("a.txt", "a");
  origin.Write("keep/b.txt", "b");
  origin.Write("gone.txt", "soon deleted");
  std::string first = origin.Commit("first");
  TempDir volume;
  auto cache = NewCache(volume.path());
  GitFetchResult cold = MustFetch(*cache, origin.path(), first);
  std::string tree = cold.worktree_dir;

  WriteFile(tree + "/a.txt", "tampered");
  WriteFile(tree + "/untracked.txt", "x");
  WriteFile(tree + "/debug.log", "ignored");
  WriteFile(tree + "/newdir/deep/file", "x");
  FileId b = Identify(tree + "/keep/b.txt");
  GitFetchResult again = MustFetch(*cache, origin.path(), first);
  CHECK(again.fetch_skipped);  // a full sha the mirror has: no transfer at all
  CHECK(again.received_objects == 0);
  CHECK(ReadFile(tree + "/a.txt") == "a");
  CHECK_FALSE(fs::exists(tree + "/untracked.txt"));
  CHECK_FALSE(fs::exists(tree + "/debug.log"));
  CHECK_FALSE(fs::exists(tree + "/newdir"));
  CHECK(Identify(tree + "/keep/b.txt") == b);

  origin.Git({"rm", "-q", "gone.txt"});
  fs::permissions(origin.path() + "/a.txt", fs::perms::owner_exec, fs::perm_options::add);
  std::string second = origin.Commit("second");
  MustFetch(*cache, origin.path(), second);
  CHECK_FALSE(fs::exists(tree + "/gone.txt"));
  CHECK((fs::status(tree + "/a.txt").permissions() & fs::perms::owner_exec) != fs::perms::none);

  // A torn index (a crash while writing it) is dropped and the tree rewritten in full.
  std::string index = (fs::path(tree).parent_path() / "checkout.index").string();
  WriteFile(index, "DIRC garbage");
  WriteFile(tree + "/a.txt", "stale");
  GitFetchResult reindexed = MustFetch(*cache, origin.path(), second);
  CHECK(ReadFile(tree + "/a.txt") == "a");
  CHECK(reindexed.files_written == 3);

  // An interrupted checkout (no record of what the tree holds) rewrites everything, correctly.
  fs::remove(fs::path(tree).parent_path() / "checkout.commit");
  WriteFile(tree + "/a.txt", "half-written");
  GitFetchResult recovered = MustFetch(*cache, origin.path(), first);
  CHECK(recovered.files_written == 4);
  CHECK(ReadFile(tree + "/a.txt") == "a");
  CHECK(ReadFile(tree + "/gone.txt") == "soon deleted");
}

TEST_CASE(
    "Source cache: revisions resolve as branch or tag or full ref or sha or short sha or remote "
    "HEAD",
    "[git]") {
  Origin origin;
  origin.Write("f", "1");
  std::string one = origin.Commit("one");
  origin.Git({"tag", "-a", "v1", "-m", "release 1"});
  origin.Git({"tag", "light"});
  origin.Write("f", "2");
  std::string two = origin.Commit("two");
  origin.Git({"checkout", "-q", "-b", "feature"});
  origin.Write("f", "3");
  std::string three = origin.Commit("three");
  origin.Git({"checkout", "-q", "main"});
  TempDir volume;
  auto cache = NewCache(volume.path());

  CHECK(MustFetch(*cache, origin.path(), "").commit_sha == two);  // HEAD -> main
  CHECK(MustFetch(*cache, origin.path(), "main").commit_sha == two);
  CHECK(MustFetch(*cache, origin.path(), "feature").commit_sha == three);
  CHECK(MustFetch(*cache, origin.path(), "refs/heads/feature").commit_sha == three);
  CHECK(MustFetch(*cache, origin.path(), "v1").commit_sha == one);  // annotated tag, peeled
  CHECK(MustFetch(*cache, origin.path(), "light").commit_sha == one);
  GitFetchResult by_short = MustFetch(*cache, origin.path(), one.substr(0, 8));
  CHECK(by_short.commit_sha == one);
  CHECK(ReadFile(by_short.worktree_dir + "/f") == "1");
  CHECK(MustFetch(*cache, origin.path(), three).commit_sha == three);

  // A branch deleted upstream is pruned from the mirror.
  origin.Git({"branch", "-q", "-D", "feature"});
  absl::Status gone = FetchStatus(*cache, origin.path(), "feature");
  CHECK(gone.code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Source cache: a missing revision or repository is NotFound naming it and not retryable",
          "[git]") {
  Origin origin;
  origin.Write("f", "1");
  origin.Commit("one");
  TempDir volume;
  auto cache = NewCache(volume.path());

  absl::Status branch = FetchStatus(*cache, origin.path(), "no-such-branch");
  CHECK(branch.code() == absl::StatusCode::kNotFound);
  CHECK(absl::StrContains(branch.message(), "no-such-branch"));
  CHECK_FALSE(IsRetryable(branch));

  std::string missing_sha(40, 'a');
  absl::Status sha = FetchStatus(*cache, origin.path(), missing_sha);
  CHECK(sha.code() == absl::StatusCode::kNotFound);
  CHECK(absl::StrContains(sha.message(), missing_sha));

  absl::Status ref = FetchStatus(*cache, origin.path(), "refs/pull/1/head");
  CHECK(ref.code() == absl::StatusCode::kNotFound);

  absl::Status repo = FetchStatus(*cache, volume.path() + "/nowhere", "main");
  CHECK(repo.code() == absl::StatusCode::kNotFound);
  CHECK_FALSE(IsRetryable(repo));

  CHECK(FetchStatus(*cache, origin.path(), "bad..name").code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(FetchStatus(*cache, origin.path(), "-x").code() == absl::StatusCode::kInvalidArgument);
  CHECK(FetchStatus(*cache, "ssh://host/r", "main").code() == absl::StatusCode::kInvalidArgument);
}

// Over HTTP: libgit2's local transport re-sends every annotated tag's objects on each fetch,
// which would blur the "only new objects" checks; smart HTTP negotiates properly.
TEST_CASE("Source cache: many incremental fetches are repacked into one pack", "[git][http]") {
  const std::string token = "kiln-test-token-repack";
  Origin origin;
  origin.Write("f", "0");
  std::string first = origin.Commit("c0");
  origin.Git({"tag", "-a", "v0", "-m", "annotated"});
  auto started =
      testing::SmartHttpServer::Start(fs::path(origin.path()).parent_path().string(), token);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    WARN("skipped: " << started.status().message());
    return;
  }
  REQUIRE(started.ok());
  std::string url = (*started)->Url("origin/.git");
  TempDir volume;
  SourceCacheOptions options;
  options.max_pack_files = 3;
  auto cache = NewCache(volume.path(), options);
  GitFetchResult result = MustFetch(*cache, url, "main", token);
  std::string mirror = (fs::path(result.worktree_dir).parent_path() / "mirror.git").string();
  std::string last;
  for (int i = 1; i <= 5; ++i) {
    origin.Write("f", std::to_string(i));
    last = origin.Commit(absl::StrCat("c", i));
    result = MustFetch(*cache, url, "main", token);
    CHECK(result.received_objects <= 3);
    CHECK(CountPackFiles(mirror) <= 3);
  }
  CHECK(result.commit_sha == last);
  // Everything is still there: history, the annotated tag, and later fetches stay incremental.
  CHECK(MustFetch(*cache, url, first, token).commit_sha == first);
  CHECK(MustFetch(*cache, url, "v0", token).commit_sha == first);
  origin.Write("f", "6");
  std::string six = origin.Commit("c6");
  GitFetchResult after = MustFetch(*cache, url, "main", token);
  CHECK(after.commit_sha == six);
  CHECK(after.received_objects <= 3);
  CHECK(ReadFile(after.worktree_dir + "/f") == "6");
}

TEST_CASE("Source cache: an unreachable remote fails fast as Unavailable and is retryable",
          "[git]") {
  TempDir volume;
  auto cache = NewCache(volume.path());
  absl::Time start = absl::Now();
  absl::Status status =
      FetchStatus(*cache, absl::StrCat("http://127.0.0.1:", testutil::FreePort(), "/org/repo.git"),
                  "main", "tok3n-value");
  CHECK(absl::Now() - start < absl::Seconds(5));
  INFO(status.ToString());
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK(IsRetryable(status));
  CHECK_FALSE(absl::StrContains(status.message(), "tok3n-value"));

  absl::Status plain = FetchStatus(*cache, "http://example.invalid/org/repo", "main", "s3cr3t");
  CHECK(plain.code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(absl::StrContains(plain.message(), "s3cr3t"));
}

// A remote that accepts the connection (the kernel does, from the listen backlog) and then
// never answers: libgit2 alone would wait forever.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_CASE("Source cache: a silent remote is cancelled promptly or times out as Unavailable",
          "[git]") {
  SilentServer silent;
  TempDir volume;
  SourceCacheOptions options;
  options.idle_timeout = absl::Seconds(30);
  auto cache = NewCache(volume.path(), options);
  for (const char* scheme : {"http", "https"}) {  // https: the TLS stream runs on ours too
    INFO(scheme);
    std::string url = absl::StrCat(scheme, "://127.0.0.1:", silent.port(), "/org/repo.git");
    absl::Time start = absl::Now();
    auto cancelled = cache->Fetch({url, "main", "tok", {}}, {},
                                  [&] { return absl::Now() - start > absl::Milliseconds(200); });
    absl::Duration took = absl::Now() - start;
    INFO(cancelled.status().ToString());
    CHECK(cancelled.status().code() == absl::StatusCode::kCancelled);
    CHECK(took < absl::Seconds(2));
  }

  options.idle_timeout = absl::Milliseconds(300);
  auto impatient = NewCache(volume.path(), options);
  absl::Time start = absl::Now();
  absl::Status timed_out =
      FetchStatus(*impatient, absl::StrCat("http://127.0.0.1:", silent.port(), "/r"), "main");
  INFO(timed_out.ToString());
  CHECK(timed_out.code() == absl::StatusCode::kUnavailable);
  CHECK(IsRetryable(timed_out));
  CHECK(absl::StrContains(timed_out.message(), "timed out"));
  CHECK(absl::Now() - start < absl::Seconds(3));
}

TEST_CASE("Source cache: an oversized or cancelled fetch stops and leaves the mirror usable",
          "[git]") {
  Origin origin;
  std::string noise;
  uint32_t x = 12345;
  for (int i = 0; i < 256 * 1024; ++i) {  // incompressible, so the pack really is this big
    x = x * 1103515245u + 12345u;
    noise.push_back(static_cast<char>(x >> 24));
  }
  origin.Write("blob.bin", noise);
  std::string sha = origin.Commit("big");
  TempDir volume;

  SourceCacheOptions small;
  small.max_fetch_bytes = 64 * 1024;
  auto limited = NewCache(volume.path(), small);
  absl::Status too_big = FetchStatus(*limited, origin.path(), "main");
  INFO(too_big.ToString());
  CHECK(too_big.code() == absl::StatusCode::kResourceExhausted);
  CHECK_FALSE(IsRetryable(too_big));

  auto cache = NewCache(volume.path());
  int calls = 0;
  auto cancelled = cache->Fetch({origin.path(), "main", "", {}}, {}, [&] { return ++calls > 1; });
  CHECK(cancelled.status().code() == absl::StatusCode::kCancelled);
  CHECK_FALSE(IsRetryable(cancelled.status()));

  GitFetchResult ok = MustFetch(*cache, origin.path(), "main");
  CHECK(ok.commit_sha == sha);
  CHECK(ReadFile(ok.worktree_dir + "/blob.bin") == noise);
}

TEST_CASE("Source cache: fetches of one repository take turns through the lock file", "[git]") {
  Origin origin;
  origin.Write("f", "1");
  std::string sha = origin.Commit("one");
  TempDir volume;
  SourceCacheOptions options;
  options.lock_timeout = absl::Milliseconds(300);
  auto cache = NewCache(volume.path(), options);
  GitFetchResult first = MustFetch(*cache, origin.path(), "main");

  // Another process holds the repository's lock.
  std::string lock_path = (fs::path(first.worktree_dir).parent_path() / "lock").string();
  int fd = ::open(lock_path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  CHECK(FetchStatus(*cache, origin.path(), "main").code() == absl::StatusCode::kDeadlineExceeded);
  // Cancelled while waiting: the lock is polled, and cancellation with it.
  int polls = 0;
  auto waiting = cache->Fetch({origin.path(), "main", "", {}}, {}, [&] { return ++polls > 3; });
  CHECK(waiting.status().code() == absl::StatusCode::kCancelled);
  ::close(fd);

  // Two concurrent fetches both succeed, one after the other.
  origin.Write("f", "2");
  std::string two = origin.Commit("two");
  absl::StatusOr<GitFetchResult> a, b;
  std::thread ta([&] { a = cache->Fetch({origin.path(), "main", "", {}}, {}, {}); });
  std::thread tb([&] { b = cache->Fetch({"file://" + origin.path(), "main", "", {}}, {}, {}); });
  ta.join();
  tb.join();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->commit_sha == two);
  CHECK(b->commit_sha == two);
  CHECK(ReadFile(a->worktree_dir + "/f") == "2");
}

TEST_CASE("Source cache: token auth over real smart HTTP and the token never reaches the disk",
          "[git][http]") {
  const std::string token = "kiln-test-token-5c1d9e";
  Origin origin;
  for (int i = 0; i < 20; ++i) origin.Write(absl::StrCat("f", i), std::to_string(i));
  std::string first = origin.Commit("first");
  auto started =
      testing::SmartHttpServer::Start(fs::path(origin.path()).parent_path().string(), token);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    WARN("skipped: " << started.status().message());
    return;
  }
  REQUIRE(started.ok());
  testing::SmartHttpServer& server = **started;
  std::string url = server.Url("origin/.git");
  TempDir volume;
  auto cache = NewCache(volume.path());

  GitFetchResult cold = MustFetch(*cache, url, "main", token);
  CHECK(cold.commit_sha == first);
  CHECK(cold.mirror_created);
  CHECK(cold.received_objects >= 21);

  origin.Write("f3", "changed");
  std::string second = origin.Commit("second");
  GitFetchResult warm = MustFetch(*cache, url, "", token);
  CHECK(warm.commit_sha == second);
  CHECK(warm.received_objects > 0);
  CHECK(warm.received_objects <= 3);  // commit, tree, blob
  CHECK(ReadFile(warm.worktree_dir + "/f3") == "changed");

  absl::Status wrong = FetchStatus(*cache, url, "main", "wrong-token-77");
  INFO(wrong.ToString());
  CHECK(wrong.code() == absl::StatusCode::kPermissionDenied);
  CHECK_FALSE(IsRetryable(wrong));
  CHECK_FALSE(absl::StrContains(wrong.message(), "wrong-token-77"));
  absl::Status none = FetchStatus(*cache, url, "main");
  CHECK(none.code() == absl::StatusCode::kPermissionDenied);

  CHECK(server.unauthorized() >= 2);  // each fetch was challenged, then answered

  absl::Status missing = FetchStatus(*cache, server.Url("no-such-repo.git"), "main", token);
  INFO(missing.ToString());
  CHECK(missing.code() == absl::StatusCode::kNotFound);

  // The mirror stays a plain bare repository: no remote URL, no work tree persisted in it.
  std::string config =
      ReadFile((fs::path(cold.worktree_dir).parent_path() / "mirror.git" / "config").string());
  CHECK(absl::StrContains(config, "bare = true"));
  CHECK_FALSE(absl::StrContains(config, "url"));
  CHECK_FALSE(absl::StrContains(config, "worktree"));
  CHECK_FALSE(AnyFileContains(volume.path(), token));
  CHECK_FALSE(AnyFileContains(volume.path(), "wrong-token-77"));

  // A redirect to another origin: libgit2 follows it, but the token stays home.
  auto other =
      testing::SmartHttpServer::Start(fs::path(origin.path()).parent_path().string(), token);
  REQUIRE(other.ok());
  std::string other_base = (*other)->Url("");
  other_base.pop_back();  // no trailing slash: the redirect appends the request's path
  auto redirecting = testing::SmartHttpServer::Start("/nonexistent", token, other_base);
  REQUIRE(redirecting.ok());
  absl::Status redirected = FetchStatus(*cache, (*redirecting)->Url("origin/.git"), "main", token);
  INFO(redirected.ToString());
  CHECK(redirected.code() == absl::StatusCode::kPermissionDenied);
  CHECK(absl::StrContains(redirected.message(), "another origin"));
  CHECK((*other)->unauthorized() >= 1);  // it asked...
  CHECK((*other)->authorized() == 0);    // ...and never got the token
}

TEST_CASE("Source cache: a commit on no branch or tag is fetched by its sha over HTTP",
          "[git][http]") {
  const std::string token = "kiln-test-token-by-sha";
  Origin origin;
  origin.Write("f", "main");
  origin.Commit("main");
  origin.Git({"checkout", "-q", "-b", "pr"});
  origin.Write("f", "pull request");
  std::string pr = origin.Commit("pr");
  origin.Git({"checkout", "-q", "main"});
  origin.Git({"branch", "-q", "-D", "pr"});  // like refs/pull/N/head: not under heads or tags
  origin.Git({"config", "uploadpack.allowAnySHA1InWant", "true"});
  auto started =
      testing::SmartHttpServer::Start(fs::path(origin.path()).parent_path().string(), token);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    WARN("skipped: " << started.status().message());
    return;
  }
  REQUIRE(started.ok());
  std::string url = (*started)->Url("origin/.git");
  TempDir volume;
  auto cache = NewCache(volume.path());
  GitFetchResult result = MustFetch(*cache, url, pr, token);
  CHECK(result.commit_sha == pr);
  CHECK(ReadFile(result.worktree_dir + "/f") == "pull request");
  // Kept in the mirror: the same sha again needs no transfer, even after other fetches.
  MustFetch(*cache, url, "main", token);
  CHECK(MustFetch(*cache, url, pr, token).fetch_skipped);

  absl::Status missing = FetchStatus(*cache, url, std::string(40, 'b'), token);
  INFO(missing.ToString());
  CHECK(missing.code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Source cache: a corrupt mirror is DataLoss and removed so the retry starts cold",
          "[git][http]") {
  // Over HTTP: libgit2 1.5.1's local transport leaks a little on this error path.
  const std::string token = "kiln-test-token-corrupt";
  Origin origin;
  for (int i = 0; i < 10; ++i) origin.Write(absl::StrCat("f", i), std::string(1000, 'a' + i));
  origin.Commit("one");
  auto started =
      testing::SmartHttpServer::Start(fs::path(origin.path()).parent_path().string(), token);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    WARN("skipped: " << started.status().message());
    return;
  }
  REQUIRE(started.ok());
  std::string url = (*started)->Url("origin/.git");
  TempDir volume;
  auto cache = NewCache(volume.path());
  GitFetchResult first = MustFetch(*cache, url, "main", token);
  fs::path packs = fs::path(first.worktree_dir).parent_path() / "mirror.git" / "objects" / "pack";
  for (const auto& entry : fs::directory_iterator(packs)) {
    if (entry.path().extension() != ".pack") continue;
    fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
    std::string garbage(fs::file_size(entry.path()) - 40, 'x');
    std::fstream pack(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    pack.seekp(20);
    pack.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  origin.Write("f0", "changed");
  std::string two = origin.Commit("two");
  absl::Status corrupt = FetchStatus(*cache, url, "main", token);
  INFO(corrupt.ToString());
  CHECK(corrupt.code() == absl::StatusCode::kDataLoss);
  CHECK(IsRetryable(corrupt));
  GitFetchResult retry = MustFetch(*cache, url, "main", token);
  CHECK(retry.mirror_created);
  CHECK(retry.commit_sha == two);
  CHECK(ReadFile(retry.worktree_dir + "/f0") == "changed");
}

TEST_CASE("Source cache: https with an untrusted certificate fails unless its CA is configured",
          "[git][http]") {
  const std::string token = "kiln-test-token-tls";
  Origin origin;
  origin.Write("f", "over tls");
  std::string sha = origin.Commit("tls");
  TempDir certs;
  std::string cert = certs.path() + "/server.pem", key = certs.path() + "/server.key";
  std::string other_cert = certs.path() + "/other.pem", other_key = certs.path() + "/other.key";
  REQUIRE(testing::WriteSelfSignedCertificate(cert, key).ok());
  REQUIRE(testing::WriteSelfSignedCertificate(other_cert, other_key).ok());
  auto started = testing::SmartHttpServer::Start(fs::path(origin.path()).parent_path().string(),
                                                 token, "", {cert, key});
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    WARN("skipped: " << started.status().message());
    return;
  }
  REQUIRE(started.ok());
  std::string url = (*started)->Url("origin/.git");
  REQUIRE(absl::StartsWith(url, "https://"));
  TempDir volume;

  absl::Status untrusted = FetchStatus(*NewCache(volume.path()), url, "main", token);
  INFO(untrusted.ToString());
  CHECK(untrusted.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(absl::StrContains(untrusted.message(), "certificate"));
  CHECK_FALSE(IsRetryable(untrusted));

  SourceCacheOptions wrong_ca;
  wrong_ca.extra_ca_file = other_cert;
  absl::Status still_untrusted =
      FetchStatus(*NewCache(volume.path(), wrong_ca), url, "main", token);
  INFO(still_untrusted.ToString());
  CHECK(still_untrusted.code() == absl::StatusCode::kFailedPrecondition);
  CHECK((*started)->authorized() == 0);  // the token never went to an untrusted server

  SourceCacheOptions right_ca;
  right_ca.extra_ca_file = cert;
  auto trusting = NewCache(volume.path(), right_ca);
  GitFetchResult result = MustFetch(*trusting, url, "main", token);
  CHECK(result.commit_sha == sha);
  CHECK(ReadFile(result.worktree_dir + "/f") == "over tls");
  CHECK((*started)->authorized() > 0);

  SourceCacheOptions missing_ca;
  missing_ca.extra_ca_file = certs.path() + "/absent.pem";
  CHECK(SourceCache::Create(volume.path(), missing_ca).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Source cache: IsRetryable separates transient failures from permanent ones", "[git]") {
  CHECK(IsRetryable(absl::UnavailableError("")));
  CHECK(IsRetryable(absl::DeadlineExceededError("")));
  CHECK(IsRetryable(absl::InternalError("")));
  CHECK(IsRetryable(absl::DataLossError("")));
  CHECK_FALSE(IsRetryable(absl::OkStatus()));
  CHECK_FALSE(IsRetryable(absl::NotFoundError("")));
  CHECK_FALSE(IsRetryable(absl::InvalidArgumentError("")));
  CHECK_FALSE(IsRetryable(absl::PermissionDeniedError("")));
  CHECK_FALSE(IsRetryable(absl::CancelledError("")));
  CHECK_FALSE(IsRetryable(absl::ResourceExhaustedError("")));
}

}  // namespace
}  // namespace kiln::builder
