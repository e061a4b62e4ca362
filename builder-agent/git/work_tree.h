// The source cache's work tree: one directory per repository, force-checked-out in place from
// the mirror. Only files that differ from what the tree held (or that were changed on disk)
// are written, so unchanged files keep their mtime and podman's COPY cache stays valid;
// untracked and ignored files are removed. What the tree holds is recorded after a complete
// checkout only: after an interrupted one, the next checkout rewrites every file.
#pragma once

#include <git2.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace kiln::builder {

struct CheckoutPaths {
  // The work tree, the libgit2 index describing it (its stat cache), and the file naming the
  // commit it holds.
  std::string tree;
  std::string index;
  std::string commit;
};

// Checks out `commit_oid` from the bare mirror at `mirror_path` into `paths.tree`; returns the
// number of files written. The mirror itself is not changed (no work tree or index is
// persisted in it). kCancelled when `cancelled` (may be empty) returns true.
absl::StatusOr<int64_t> CheckOut(const std::string& mirror_path, const git_oid& commit_oid,
                                 const CheckoutPaths& paths,
                                 const std::function<bool()>& cancelled);

}  // namespace kiln::builder
