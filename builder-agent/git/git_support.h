// Small helpers around libgit2 for the source cache: one-time library setup, owning pointers
// for libgit2 objects, the last libgit2 error as text, and redaction of a secret from text.
#pragma once

#include <git2.h>

#include <memory>
#include <string>
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kiln::builder {

// Initialises libgit2 once per process (thread-safe, idempotent). Also empties libgit2's
// system, global and XDG config search paths so that the host's ~/.gitconfig (autocrlf,
// insteadOf, credential helpers) never changes what a build checks out: the agent's git is
// hermetic. Also registers the interruptible socket stream (socket_stream.h). Both are
// process-wide, which suits the agent: it is the process's only git user.
void InitLibgit2();

struct GitFree {
  void operator()(git_repository* p) const { git_repository_free(p); }
  void operator()(git_remote* p) const { git_remote_free(p); }
  void operator()(git_commit* p) const { git_commit_free(p); }
  void operator()(git_tree* p) const { git_tree_free(p); }
  void operator()(git_object* p) const { git_object_free(p); }
  void operator()(git_reference* p) const { git_reference_free(p); }
  void operator()(git_index* p) const { git_index_free(p); }
  void operator()(git_treebuilder* p) const { git_treebuilder_free(p); }
};
template <typename T>
using GitPtr = std::unique_ptr<T, GitFree>;

// The message of the calling thread's last libgit2 error, or "libgit2 error <code>".
std::string LastGitErrorMessage(int code);
// The class (GIT_ERROR_*) of the calling thread's last libgit2 error, or GIT_ERROR_NONE.
int LastGitErrorClass();

// `text` with every occurrence of `secret` replaced by "[redacted]" (no-op for an empty one).
std::string Redact(absl::string_view text, absl::string_view secret);

// 40 lower-case hex digits.
std::string OidHex(const git_oid& oid);

// Whether a libgit2 error class means the repository's data is damaged (objects, packs).
bool IsCorruptionClass(int klass);

// A failed local libgit2 operation (on the mirror or the work tree) as a status: kDataLoss
// when libgit2 found the repository corrupt, kInternal otherwise. "<what>: <libgit2 message>".
absl::Status LocalGitError(int code, absl::string_view what);

// Lower-case hex SHA-1 of `data` (names mirror directories; not a security boundary).
std::string Sha1Hex(absl::string_view data);

}  // namespace kiln::builder
