#include "builder-agent/git/repository_url.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "builder-agent/git/git_support.h"

namespace kiln::builder {
namespace {

constexpr size_t kMaxNameLength = 40;

// Drops trailing slashes and one ".git" suffix: "org/repo.git/" and "org/repo" are one repo.
std::string TrimRepositoryPath(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (absl::EndsWith(path, ".git") && path.size() > 4) path.resize(path.size() - 4);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string NameFromPath(absl::string_view path) {
  size_t slash = path.find_last_of('/');
  absl::string_view last = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  std::string name;
  for (char c : last) {
    if (name.size() >= kMaxNameLength) break;
    bool ok =
        absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    name.push_back(ok ? c : '_');
  }
  if (name.empty()) return "repo";
  if (name.front() == '.') name = absl::StrCat("r", name);  // never "." or ".."
  return name;
}

bool IsLoopbackHost(absl::string_view host) {
  return host == "localhost" || host == "[::1]" || absl::StartsWith(host, "127.");
}

absl::StatusOr<RepositoryUrl> ParseLocal(absl::string_view original, absl::string_view path) {
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("repository path must be absolute: '", original, "'"));
  }
  std::string normal = std::filesystem::path(std::string(path)).lexically_normal().string();
  normal = TrimRepositoryPath(normal);
  RepositoryUrl url;
  url.kind = RepositoryUrl::Kind::kLocal;
  url.url = std::string(original);
  url.local_path = std::string(path);
  url.normalized = absl::StrCat("file://", normal);
  url.name = NameFromPath(normal);
  url.token_allowed = false;  // a local repository never asks for credentials
  return url;
}

}  // namespace

absl::StatusOr<RepositoryUrl> ParseRepositoryUrl(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("repository URL is empty");
  if (text.size() > kMaxRepositoryUrlLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("repository URL is longer than ", kMaxRepositoryUrlLength, " characters"));
  }
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("repository URL contains whitespace or control characters");
    }
  }
  if (text.front() == '/') return ParseLocal(text, text);
  size_t sep = text.find("://");
  if (sep == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "repository URL must be https://, http://, file:// or an absolute path");
  }
  std::string scheme = absl::AsciiStrToLower(text.substr(0, sep));
  absl::string_view rest = text.substr(sep + 3);
  if (scheme == "file") {
    if (rest.empty() || rest.front() != '/') {
      return absl::InvalidArgumentError("file:// URLs must name an absolute path (file:///...)");
    }
    return ParseLocal(text, rest);
  }
  if (scheme != "https" && scheme != "http") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported repository URL scheme '", scheme,
                                                   "' (use https, http, file or a path)"));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos ? "" : rest.substr(slash);
  // Checked before anything that could echo the URL: user info may hold a password.
  if (authority.find('@') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "credentials in the repository URL are not accepted; pass the token separately");
  }
  if (rest.find_first_of("?#") != absl::string_view::npos) {
    return absl::InvalidArgumentError("repository URL must not have a query or fragment");
  }
  std::string host;
  absl::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("repository URL has an unterminated IPv6 host");
    }
    host = std::string(authority.substr(0, close + 1));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return absl::InvalidArgumentError("repository URL: bad host");
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.find(':');
    host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) port = authority.substr(colon + 1);
  }
  host = absl::AsciiStrToLower(host);
  if (host.empty()) return absl::InvalidArgumentError("repository URL has no host");
  if (!port.empty()) {
    int port_number = 0;
    if (!absl::SimpleAtoi(port, &port_number) || port_number <= 0 || port_number > 65535) {
      return absl::InvalidArgumentError("repository URL has an invalid port");
    }
  }
  std::string trimmed = TrimRepositoryPath(std::string(path));
  if (trimmed.empty() || trimmed == "/") {
    return absl::InvalidArgumentError("repository URL has no repository path");
  }
  bool default_port =
      port.empty() || (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
  RepositoryUrl url;
  url.kind = scheme == "https" ? RepositoryUrl::Kind::kHttps : RepositoryUrl::Kind::kHttp;
  url.url = std::string(text);
  url.host = host;
  url.origin = UrlOrigin(text);
  url.normalized =
      absl::StrCat(scheme, "://", host, default_port ? "" : ":", default_port ? "" : port, trimmed);
  url.name = NameFromPath(trimmed);
  url.token_allowed = scheme == "https" || IsLoopbackHost(host);
  return url;
}

std::string UrlOrigin(absl::string_view url) {
  size_t sep = url.find("://");
  if (sep == absl::string_view::npos) return "";
  std::string scheme = absl::AsciiStrToLower(url.substr(0, sep));
  if (scheme != "https" && scheme != "http") return "";
  absl::string_view authority = url.substr(sep + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (size_t at = authority.rfind('@'); at != absl::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  std::string origin = absl::AsciiStrToLower(authority);
  std::string default_port = scheme == "https" ? ":443" : ":80";
  if (absl::EndsWith(origin, default_port)) origin.resize(origin.size() - default_port.size());
  if (origin.empty()) return "";
  return absl::StrCat(scheme, "://", origin);
}

std::string CacheKey(const RepositoryUrl& url) {
  return absl::StrCat(url.name, "-", Sha1Hex(url.normalized).substr(0, 16));
}

}  // namespace kiln::builder
