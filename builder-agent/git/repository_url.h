// Repository URLs for the source cache: which forms are accepted (https, http, file:// and
// absolute local paths), the normalised form that names a repository's mirror on the volume
// (so "HTTPS://Host/org/repo.git/" and "https://host/org/repo" share one mirror), and whether
// a token may be sent to it. Credentials embedded in a URL are refused: a token travels only
// through libgit2's credentials callback, never in a URL that could be logged or persisted.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace kiln::builder {

inline constexpr size_t kMaxRepositoryUrlLength = 2048;

struct RepositoryUrl {
  enum class Kind { kHttps, kHttp, kLocal };
  Kind kind = Kind::kLocal;
  std::string url;         // what libgit2 is given (the request's URL, validated)
  std::string normalized;  // "https://host[:port]/path" or "file:///abs/path", no ".git", no "/"
  std::string host;        // lower case; empty for local repositories
  std::string local_path;  // local repositories: the path as given (file:// removed)
  std::string origin;      // "scheme://host[:port]" (see UrlOrigin); empty for local ones
  // A short readable name for the mirror's directory: the last path component, sanitised.
  std::string name;
  // Whether a token may be sent: https, or plain http to a loopback host only.
  bool token_allowed = false;
};

// Validates and normalises `url`. kInvalidArgument (without echoing credentials) for an
// unsupported scheme, a relative path, embedded user info, a query or fragment, control
// characters or a URL longer than kMaxRepositoryUrlLength.
absl::StatusOr<RepositoryUrl> ParseRepositoryUrl(absl::string_view url);

// "scheme://host[:port]" of an http(s) URL: lower case, default port dropped, user info
// removed; empty when `url` is not an http(s) URL. A token goes only to the request's origin.
std::string UrlOrigin(absl::string_view url);

// "<name>-<first 16 hex digits of the SHA-1 of the normalised URL>": the repository's
// directory under the cache root. Derived from the normalised URL only, never from a token.
std::string CacheKey(const RepositoryUrl& url);

}  // namespace kiln::builder
