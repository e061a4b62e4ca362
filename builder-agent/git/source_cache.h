// The builder agent's source cache: turns (repository URL, revision) into a checked-out work
// tree on the machine's persistent volume, as fast as the change allows. Each repository gets
// one directory under the cache root, named from a hash of its normalised URL:
//
//   <root>/<name>-<hash16>/
//     mirror.git/      bare mirror of the remote's branches and tags, fetched incrementally
//     tree/            the work tree (the build context), reused and force-checked-out
//     checkout.index   libgit2 index describing tree/ (stat cache: unchanged files untouched)
//     checkout.commit  the commit tree/ holds; absent while a checkout is under way
//     lock             flock()ed for a whole fetch + checkout
//
// A warm fetch downloads only new objects; a warm checkout rewrites only files that differ
// (unchanged files keep their mtime, which keeps podman's COPY layer cache warm) and removes
// untracked and ignored files. The tree stays as checked out until the next Fetch of the same
// repository, so a caller runs one build per repository at a time. A token is handed to libgit2
// through its credentials callback only: it never appears in a URL, the mirror's config, an error
// message or a log line.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::builder {

struct GitFetchRequest {
  std::string repository_url;  // https://…, http://127.0.0.1…, file:///…, or an absolute path
  std::string revision;        // full/short sha, branch, tag or full ref; empty = remote HEAD
  std::string token;           // HTTPS token, a secret: never in any message or log
  // Paths in the commit (relative to its root; "" is the root tree) whose object ids the
  // result reports in the same order, "" for a path the commit does not have.
  std::vector<std::string> object_paths;
};

struct GitFetchProgress {
  int64_t received_objects = 0;
  int64_t total_objects = 0;
  int64_t received_bytes = 0;
};

struct GitFetchResult {
  std::string commit_sha;       // resolved, 40 hex
  std::string worktree_dir;     // absolute path of the checked-out tree on the volume
  bool mirror_created = false;  // true on a cold fetch (no usable mirror before)
  bool fetch_skipped = false;   // the revision was a full sha already in the mirror
  int64_t received_objects = 0;
  int64_t received_bytes = 0;
  int64_t files_written = 0;            // files the checkout created or rewrote
  std::vector<std::string> object_ids;  // of request.object_paths, 40 hex or ""

  absl::Duration fetch_duration;
  absl::Duration checkout_duration;
};

struct SourceCacheOptions {
  // A fetch that receives more than this is aborted (kResourceExhausted).
  int64_t max_fetch_bytes = int64_t{2} << 30;
  // How long a fetch waits for another fetch of the same repository to release the lock.
  absl::Duration lock_timeout = absl::Minutes(10);
  // A remote that does not accept the connection, or sends nothing, for this long is
  // unavailable (retryable). Cancellation is noticed within ~50 ms regardless.
  absl::Duration connect_timeout = absl::Seconds(30);
  absl::Duration idle_timeout = absl::Seconds(120);
  // PEM file of extra certificate authorities trusted for https remotes (a git server with a
  // private CA), on top of the system's bundle. Empty: the system's bundle only.
  std::string extra_ca_file;
  // libgit2 writes a pack per fetch; past this many the mirror is repacked into one.
  int max_pack_files = 32;
  // on_progress is called at most this often (and once at the end of the transfer).
  absl::Duration progress_interval = absl::Milliseconds(200);
};

inline constexpr size_t kMaxRevisionLength = 256;
inline constexpr size_t kMaxTokenLength = 4096;

class ExtraTrust;

class SourceCache {
 public:
  // `root` is a directory on the persistent volume (e.g. <volume>/git); created if missing.
  static absl::StatusOr<std::unique_ptr<SourceCache>> Create(std::string root,
                                                             SourceCacheOptions options = {});

  // Fetches `request.revision` of `request.repository_url` into the repository's mirror
  // (skipped when the revision is a full sha the mirror already has) and checks it out into
  // the repository's work tree. Safe to call from several threads and processes: fetches of
  // one repository are serialised by a file lock. on_progress may be empty; cancelled may be
  // empty. Errors:
  //   kInvalidArgument    bad URL or revision, or a token that would go over plain http
  //   kNotFound           no such repository, branch, tag or commit (names the revision)
  //   kPermissionDenied   authentication required or refused
  //   kUnavailable        remote unreachable or failing (the reason is in the message)
  //   kResourceExhausted  the fetch exceeded max_fetch_bytes
  //   kCancelled          cancelled() returned true
  //   kDeadlineExceeded   the repository's lock was held longer than lock_timeout
  //   kInternal           the mirror or work tree could not be read or written
  //   kDataLoss           the mirror was corrupt; it has been removed, a retry starts cold
  absl::StatusOr<GitFetchResult> Fetch(
      const GitFetchRequest& request,
      const std::function<void(const GitFetchProgress&)>& on_progress,
      const std::function<bool()>& cancelled);

  const std::string& root() const { return root_; }
  ~SourceCache();

 private:
  SourceCache(std::string root, SourceCacheOptions options,
              std::unique_ptr<ExtraTrust> extra_trust);

  std::string root_;
  SourceCacheOptions options_;
  std::unique_ptr<ExtraTrust> extra_trust_;  // null without extra_ca_file
};

// Whether a failed fetch is worth retrying: unreachable or failing remote, lock timeout,
// transient I/O or a corrupt mirror (removed, so the retry starts cold) — yes; missing commit/ref,
// bad URL, authentication refused, too large, cancelled — no.
bool IsRetryable(const absl::Status& status);

}  // namespace kiln::builder
