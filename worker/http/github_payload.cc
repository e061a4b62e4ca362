#include "worker/http/github_payload.h"

#include <google/protobuf/util/json_util.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kiln/platform/v1/github.pb.h"

namespace kiln::worker {
namespace {

namespace pb = ::kiln::platform::v1;

// This abseil's string_view is not std::string_view.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr std::string_view kHeadsPrefix = "refs/heads/";
constexpr std::string_view kTagsPrefix = "refs/tags/";

template <typename Message>
absl::Status ParseJson(std::string_view event, std::string_view body, Message* message) {
  google::protobuf::util::JsonParseOptions options;
  // GitHub adds fields without notice; only what github.proto declares is read.
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", Av(event), " payload: ", status.message().as_string()));
  }
  return absl::OkStatus();
}

absl::Status ReadRepository(const pb::GithubRepository& repository, GithubDelivery* out) {
  for (const std::string* url : {&repository.clone_url(), &repository.html_url(),
                                 &repository.ssh_url(), &repository.git_url()}) {
    if (!url->empty()) out->repository_urls.push_back(*url);
  }
  out->repository_name = repository.full_name();
  if (out->repository_urls.empty()) {
    return absl::InvalidArgumentError("payload has no repository URL");
  }
  return absl::OkStatus();
}

bool IsCommitId(std::string_view s) {
  if (s.size() != 40 && s.size() != 64) return false;  // SHA-1 or SHA-256 repositories.
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

bool IsZeroId(std::string_view s) { return !s.empty() && s.find_first_not_of('0') == s.npos; }

// The first line of `message`, cut to the limit on a UTF-8 character boundary.
std::string FirstLine(std::string_view message) {
  message = message.substr(0, message.find('\n'));
  if (!message.empty() && message.back() == '\r') message.remove_suffix(1);
  if (message.size() > kMaxGithubMessageBytes) {
    size_t cut = kMaxGithubMessageBytes;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
    message = message.substr(0, cut);
  }
  return std::string(message);
}

absl::Status CheckBranch(std::string_view branch) {
  if (branch.empty()) return absl::InvalidArgumentError("empty branch name");
  if (branch.size() > kMaxGithubRefBytes) return absl::InvalidArgumentError("branch name too long");
  return absl::OkStatus();
}

absl::StatusOr<GithubDelivery> ParsePush(std::string_view body) {
  pb::GithubPushPayload push;
  if (auto s = ParseJson("push", body, &push); !s.ok()) return s;
  GithubDelivery out;
  if (!push.has_repository()) return absl::InvalidArgumentError("push payload has no repository");
  if (auto s = ReadRepository(push.repository(), &out); !s.ok()) return s;
  const std::string& ref = push.ref();
  if (ref.empty()) return absl::InvalidArgumentError("push payload has no ref");
  if (ref.size() > kMaxGithubRefBytes) return absl::InvalidArgumentError("ref too long");
  if (ref.starts_with(kTagsPrefix)) {
    out.action = GithubAction::kIgnore;
    out.ignore_reason = "tag push";
    return out;
  }
  if (!ref.starts_with(kHeadsPrefix)) {
    out.action = GithubAction::kIgnore;
    out.ignore_reason = "not a branch";
    return out;
  }
  out.branch = ref.substr(kHeadsPrefix.size());
  if (auto s = CheckBranch(out.branch); !s.ok()) return s;
  if (push.deleted() || IsZeroId(push.after())) {
    out.action = GithubAction::kDeleteBranch;
    return out;
  }
  if (!IsCommitId(push.after())) {
    return absl::InvalidArgumentError("push payload's after is not a commit id");
  }
  out.action = GithubAction::kPush;
  out.commit_sha = push.after();
  if (push.has_head_commit()) {
    out.tree_id = push.head_commit().tree_id();
    out.message = FirstLine(push.head_commit().message());
  }
  out.pusher = push.pusher().name();
  return out;
}

absl::StatusOr<GithubDelivery> ParseDelete(std::string_view body) {
  pb::GithubDeletePayload del;
  if (auto s = ParseJson("delete", body, &del); !s.ok()) return s;
  GithubDelivery out;
  if (!del.has_repository()) return absl::InvalidArgumentError("delete payload has no repository");
  if (auto s = ReadRepository(del.repository(), &out); !s.ok()) return s;
  if (del.ref_type() == "tag") {
    out.action = GithubAction::kIgnore;
    out.ignore_reason = "tag deleted";
    return out;
  }
  if (del.ref_type() != "branch") {
    return absl::InvalidArgumentError("delete payload's ref_type is neither branch nor tag");
  }
  std::string_view ref = del.ref();
  // GitHub sends the short name; accept the full one too.
  if (ref.starts_with(kHeadsPrefix)) ref.remove_prefix(kHeadsPrefix.size());
  if (auto s = CheckBranch(ref); !s.ok()) return s;
  out.action = GithubAction::kDeleteBranch;
  out.branch = std::string(ref);
  return out;
}

absl::StatusOr<GithubDelivery> ParsePing(std::string_view body) {
  pb::GithubPingPayload ping;
  if (auto s = ParseJson("ping", body, &ping); !s.ok()) return s;
  GithubDelivery out;
  out.action = GithubAction::kPing;
  out.zen = ping.zen();
  // An organisation's hook pings without a repository; a repository's hook names it.
  if (ping.has_repository()) {
    if (auto s = ReadRepository(ping.repository(), &out); !s.ok()) return s;
  }
  return out;
}

// Lower-cases the host of an authority "[user@]host[:port]", leaving the user as it is.
std::string LowerHost(std::string_view authority) {
  size_t at = authority.rfind('@');
  size_t host_start = at == authority.npos ? 0 : at + 1;
  return absl::StrCat(Av(authority.substr(0, host_start)),
                      absl::AsciiStrToLower(Av(authority.substr(host_start))));
}

}  // namespace

absl::StatusOr<GithubDelivery> ParseGithubDelivery(std::string_view event, std::string_view body) {
  if (event == "push") return ParsePush(body);
  if (event == "delete") return ParseDelete(body);
  if (event == "ping") return ParsePing(body);
  return absl::InvalidArgumentError(absl::StrCat("unsupported event: ", Av(event)));
}

std::string NormalizeRepositoryUrl(std::string_view url) {
  absl::string_view stripped = absl::StripAsciiWhitespace(Av(url));
  url = std::string_view(stripped.data(), stripped.size());
  // A local repository is named by its path, exactly.
  if (url.empty() || url.front() == '/' || url.front() == '.' || url.front() == '~' ||
      absl::StartsWithIgnoreCase(Av(url), "file://")) {
    return std::string(url);
  }
  std::string out;
  if (size_t scheme_end = url.find("://"); scheme_end != url.npos) {
    std::string_view rest = url.substr(scheme_end + 3);
    size_t path_start = std::min(rest.find('/'), rest.size());
    out = absl::StrCat(absl::AsciiStrToLower(Av(url.substr(0, scheme_end))), "://",
                       LowerHost(rest.substr(0, path_start)), Av(rest.substr(path_start)));
  } else if (size_t colon = url.find(':');
             colon != url.npos && url.substr(0, colon).find('/') == url.npos) {
    // scp-like: [user@]host:path
    out = absl::StrCat(LowerHost(url.substr(0, colon)), Av(url.substr(colon)));
  } else {
    out = std::string(url);
  }
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (out.ends_with(".git")) out.resize(out.size() - 4);
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

bool RepositoryMatches(const std::vector<std::string>& delivery_urls,
                       std::string_view project_url) {
  const std::string want = NormalizeRepositoryUrl(project_url);
  if (want.empty()) return false;
  for (const std::string& url : delivery_urls) {
    if (NormalizeRepositoryUrl(url) == want) return true;
  }
  return false;
}

}  // namespace kiln::worker
