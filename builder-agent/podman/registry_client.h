// The one thing the agent asks a registry directly: the sizes of the blobs in a manifest it just
// pushed, to report the bytes a push uploaded (podman's output does not say). Plain HTTP to a
// loopback registry only (the --tls-verify=false case); anything else is Unimplemented and the
// bytes stay unknown.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::builder {

inline constexpr size_t kMaxManifestBytes = 1 << 20;

// Blob digest → compressed size, for the config and every layer of the manifest
// `repository`@`digest` ("127.0.0.1:5000/kiln/app", "sha256:...").
absl::StatusOr<std::map<std::string, int64_t>> ManifestBlobSizes(const std::string& repository,
                                                                 const std::string& digest,
                                                                 absl::Duration timeout);

}  // namespace kiln::builder
