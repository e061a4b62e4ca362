// Keeps a fetched-into mirror fast: libgit2 writes one pack file per fetch and never repacks,
// so after many incremental fetches object lookups would walk hundreds of packs. Past a limit,
// every object reachable from the mirror's refs (and from commits the caller names) is written
// into one new pack and the old packs are deleted. The caller must hold the mirror's lock.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::builder {

// The number of pack files in the bare repository at `mirror_path`.
int CountPackFiles(const std::string& mirror_path);

// Repacks when the mirror has more than `max_pack_files` packs; returns whether it did.
// `keep_commits` (40-hex shas) stay reachable even when no ref points at them.
absl::StatusOr<bool> RepackIfNeeded(const std::string& mirror_path, int max_pack_files,
                                    const std::vector<std::string>& keep_commits);

}  // namespace kiln::builder
