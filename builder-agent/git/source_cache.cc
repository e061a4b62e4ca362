#include "builder-agent/git/source_cache.h"

#include <git2.h>

#include <filesystem>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "builder-agent/git/extra_trust.h"
#include "builder-agent/git/file_lock.h"
#include "builder-agent/git/git_support.h"
#include "builder-agent/git/repack.h"
#include "builder-agent/git/repository_url.h"
#include "builder-agent/git/socket_stream.h"
#include "builder-agent/git/work_tree.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

namespace fs = std::filesystem;

constexpr char kMirrorDir[] = "mirror.git";
constexpr char kTreeDir[] = "tree";
constexpr char kIndexFile[] = "checkout.index";
constexpr char kCommitFile[] = "checkout.commit";
constexpr char kLockFile[] = "lock";
// Where a commit fetched by sha (not reachable from a branch or tag) is kept reachable.
constexpr char kFetchedRef[] = "refs/kiln/fetched";
// The user name sent with a token; GitHub, GitLab and Gitea accept any name with a token.
constexpr char kTokenUser[] = "x-access-token";

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsFullSha(absl::string_view s) { return s.size() == GIT_OID_HEXSZ && IsHex(s); }

absl::Status ValidateRevision(const std::string& revision) {
  if (revision.size() > kMaxRevisionLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("revision is longer than ", kMaxRevisionLength, " characters"));
  }
  if (revision.empty() || IsHex(revision)) return absl::OkStatus();
  std::string as_ref =
      absl::StartsWith(revision, "refs/") ? revision : absl::StrCat("refs/heads/", revision);
  int valid = 0;
  if (revision.front() == '-' || git_reference_name_is_valid(&valid, as_ref.c_str()) != 0 ||
      !valid) {
    return absl::InvalidArgumentError(absl::StrCat("invalid revision '", revision, "'"));
  }
  return absl::OkStatus();
}

// State shared with libgit2's callbacks during one transfer.
struct TransferContext {
  const std::function<void(const GitFetchProgress&)>* on_progress = nullptr;
  const std::function<bool()>* cancelled = nullptr;
  const std::string* token = nullptr;
  const std::string* origin = nullptr;  // where the token may go (RepositoryUrl::origin)
  const ExtraTrust* extra_trust = nullptr;
  int64_t max_bytes = 0;
  absl::Duration progress_interval;
  absl::Duration connect_timeout;
  absl::Duration idle_timeout;
  absl::Time last_report = absl::InfinitePast();
  GitFetchProgress progress;
  int credential_calls = 0;
  bool was_cancelled = false;
  bool too_large = false;
  bool auth_refused = false;
  bool redirected_elsewhere = false;

  bool CheckCancelled() {
    if (!was_cancelled && *cancelled && (*cancelled)()) was_cancelled = true;
    return was_cancelled;
  }
  void Report(bool force) {
    if (!*on_progress) return;
    absl::Time now = absl::Now();
    if (!force && now - last_report < progress_interval) return;
    last_report = now;
    (*on_progress)(progress);
  }
};

int OnTransferProgress(const git_indexer_progress* stats, void* payload) {
  auto* ctx = static_cast<TransferContext*>(payload);
  ctx->progress.received_objects = stats->received_objects;
  ctx->progress.total_objects = stats->total_objects;
  ctx->progress.received_bytes = static_cast<int64_t>(stats->received_bytes);
  if (ctx->CheckCancelled()) {
    git_error_set_str(GIT_ERROR_CALLBACK, "fetch cancelled");
    return GIT_EUSER;
  }
  if (ctx->progress.received_bytes > ctx->max_bytes) {
    ctx->too_large = true;
    git_error_set_str(GIT_ERROR_CALLBACK, "fetch too large");
    return GIT_EUSER;
  }
  ctx->Report(stats->received_objects == stats->total_objects);
  return 0;
}

// Server messages ("Counting objects…") arrive before any pack data: a cancel point too.
int OnSidebandProgress(const char*, int, void* payload) {
  auto* ctx = static_cast<TransferContext*>(payload);
  return ctx->CheckCancelled() ? GIT_EUSER : 0;
}

int OnCredentials(git_credential** out, const char* url, const char*, unsigned int allowed_types,
                  void* payload) {
  auto* ctx = static_cast<TransferContext*>(payload);
  ++ctx->credential_calls;
  if (ctx->CheckCancelled()) return GIT_EUSER;
  // libgit2 follows a redirect on the first request; the token must not follow it to another
  // host, port or scheme (https -> http would put it on the wire in clear).
  if (UrlOrigin(url == nullptr ? "" : url) != *ctx->origin) {
    ctx->auth_refused = true;
    ctx->redirected_elsewhere = true;
    git_error_set_str(GIT_ERROR_CALLBACK, "credentials requested by another origin");
    return GIT_EUSER;
  }
  // A second request for credentials means the token we gave was refused; asking again
  // would loop. No token, or a server that wants something other than user/password: refused.
  if (ctx->token->empty() || ctx->credential_calls > 1 ||
      (allowed_types & GIT_CREDENTIAL_USERPASS_PLAINTEXT) == 0) {
    ctx->auth_refused = true;
    git_error_set_str(GIT_ERROR_CALLBACK, "authentication refused");
    return GIT_EUSER;
  }
  return git_credential_userpass_plaintext_new(out, kTokenUser, ctx->token->c_str());
}

// libgit2 rejected the server's certificate (`valid` 0): accept it only when it chains to an
// extra CA and names the host. Otherwise libgit2's own error stands (kFailedPrecondition).
int OnCertificateCheck(git_cert* cert, int valid, const char* host, void* payload) {
  auto* ctx = static_cast<TransferContext*>(payload);
  if (valid) return 0;
  if (ctx->extra_trust == nullptr || cert == nullptr || cert->cert_type != GIT_CERT_X509) {
    return GIT_PASSTHROUGH;
  }
  const auto* x509 = reinterpret_cast<const git_cert_x509*>(cert);
  absl::Status trusted = ctx->extra_trust->Verify(x509->data, x509->len, host ? host : "");
  if (trusted.ok()) return 0;
  git_error_set_str(GIT_ERROR_SSL, std::string(trusted.message()).c_str());
  return GIT_ECERTIFICATE;
}

// Maps a failed remote operation (connect or fetch) to a status. `code` is libgit2's answer.
absl::Status RemoteError(int code, const TransferContext& ctx, const RepositoryUrl& url) {
  if (ctx.was_cancelled)
    return absl::CancelledError(absl::StrCat("fetch of ", url.url, " cancelled"));
  if (ctx.too_large) {
    return absl::ResourceExhaustedError(
        absl::StrCat("fetch of ", url.url, " exceeded the limit of ", ctx.max_bytes, " bytes"));
  }
  if (ctx.redirected_elsewhere) {
    return absl::PermissionDeniedError(
        absl::StrCat(url.url,
                     " redirected to another origin that asked for credentials; the token is only "
                     "sent to ",
                     url.origin));
  }
  if (ctx.auth_refused || code == GIT_EAUTH) {
    return absl::PermissionDeniedError(
        ctx.token->empty()
            ? absl::StrCat(url.url, " requires authentication and no token was given")
            : absl::StrCat(url.url, " refused the token"));
  }
  std::string message = LastGitErrorMessage(code);
  std::string lower = absl::AsciiStrToLower(message);
  if (IsCorruptionClass(LastGitErrorClass())) {
    return absl::DataLossError(absl::StrCat("mirror of ", url.url, " is corrupt: ", message));
  }
  if (code == GIT_ECERTIFICATE) {
    return absl::FailedPreconditionError(
        absl::StrCat("TLS certificate of ", url.host, " not trusted: ", message));
  }
  if (absl::StrContains(lower, "status code: 401") ||
      absl::StrContains(lower, "status code: 403")) {
    return absl::PermissionDeniedError(absl::StrCat(url.url, " refused access: ", message));
  }
  if (absl::StrContains(lower, "status code: 404") ||
      absl::StrContains(lower, "could not find repository") ||
      (url.kind == RepositoryUrl::Kind::kLocal && code == GIT_ENOTFOUND)) {
    return absl::NotFoundError(absl::StrCat("repository ", url.url, " not found: ", message));
  }
  if (absl::StrContains(lower, "unsupported url protocol")) {
    return absl::InvalidArgumentError(absl::StrCat(url.url, ": ", message));
  }
  // Anything else from the transport — refused or reset connections, DNS failures, 5xx
  // answers, a remote dying mid-transfer — is the remote being unavailable right now.
  return absl::UnavailableError(absl::StrCat(url.url, " unreachable: ", message));
}

// Removes "*.lock" files a crashed fetch or checkout left in the mirror's refs or beside the
// index: while we hold the repository's flock nobody else can be writing them, and libgit2
// would otherwise refuse every later ref update.
void RemoveStaleGitLocks(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const char* top : {"", "/mirror.git", "/mirror.git/refs"}) {
    fs::path base = absl::StrCat(dir, top);
    bool recursive = absl::EndsWith(top, "/refs");
    auto consider = [&](const fs::directory_entry& entry) {
      if (entry.path().extension() == ".lock" && entry.is_regular_file(ec)) {
        stale.push_back(entry.path());
      }
    };
    if (recursive) {
      for (auto it = fs::recursive_directory_iterator(base, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        consider(*it);
      }
    } else {
      for (auto it = fs::directory_iterator(base, ec); !ec && it != fs::directory_iterator();
           it.increment(ec)) {
        consider(*it);
      }
    }
    ec.clear();
  }
  for (const fs::path& path : stale) {
    if (path.filename() == kLockFile) continue;  // our own flock file has no extension
    LogWarn("git.stale_lock_removed", {{"path", path.string()}});
    fs::remove(path, ec);
  }
}

// Opens the bare mirror at `path`, creating it when missing; an unreadable one is replaced.
absl::StatusOr<GitPtr<git_repository>> OpenOrCreateMirror(const std::string& path, bool* created) {
  *created = false;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    git_repository* repo = nullptr;
    int rc = git_repository_open_ext(
        &repo, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, nullptr);
    if (rc == 0) return GitPtr<git_repository>(repo);
    LogWarn("git.mirror_unreadable", {{"path", path}, {"error", LastGitErrorMessage(rc)}});
    fs::remove_all(path, ec);
    if (ec) return absl::InternalError(absl::StrCat("removing ", path, ": ", ec.message()));
  }
  git_repository_init_options init;
  git_repository_init_options_init(&init, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
  init.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
  git_repository* repo = nullptr;
  if (int rc = git_repository_init_ext(&repo, path.c_str(), &init); rc != 0) {
    return LocalGitError(rc, absl::StrCat("creating mirror ", path));
  }
  *created = true;
  return GitPtr<git_repository>(repo);
}

// The ids of `paths` in `commit` ("" for the root tree; "" for a path it does not have).
absl::StatusOr<std::vector<std::string>> ObjectIds(git_repository* repo, const git_oid& commit,
                                                   const std::vector<std::string>& paths) {
  std::vector<std::string> ids;
  if (paths.empty()) return ids;
  git_commit* raw_commit = nullptr;
  if (int rc = git_commit_lookup(&raw_commit, repo, &commit); rc != 0) {
    return LocalGitError(rc, "reading the commit");
  }
  GitPtr<git_commit> owned_commit(raw_commit);
  git_tree* raw_tree = nullptr;
  if (int rc = git_commit_tree(&raw_tree, raw_commit); rc != 0) {
    return LocalGitError(rc, "reading the commit's tree");
  }
  GitPtr<git_tree> tree(raw_tree);
  for (const std::string& path : paths) {
    std::string clean(absl::StripSuffix(absl::StripPrefix(path, "./"), "/"));
    if (clean.empty() || clean == ".") {
      ids.push_back(OidHex(*git_tree_id(raw_tree)));
      continue;
    }
    git_tree_entry* entry = nullptr;
    int rc = git_tree_entry_bypath(&entry, raw_tree, clean.c_str());
    if (rc == GIT_ENOTFOUND) {
      ids.emplace_back();
      continue;
    }
    if (rc != 0) return LocalGitError(rc, absl::StrCat("reading ", clean));
    ids.push_back(OidHex(*git_tree_entry_id(entry)));
    git_tree_entry_free(entry);
  }
  return ids;
}

// Resolves `revision` against the mirror's refs and objects; nullopt when nothing matches.
absl::StatusOr<std::optional<git_oid>> ResolveLocally(git_repository* repo,
                                                      const std::string& revision,
                                                      const std::string& default_branch) {
  std::vector<std::string> names;
  if (revision.empty()) {
    if (!default_branch.empty()) names.push_back(default_branch);
  } else if (absl::StartsWith(revision, "refs/")) {
    names.push_back(revision);
  } else {
    names.push_back(absl::StrCat("refs/heads/", revision));
    names.push_back(absl::StrCat("refs/tags/", revision));
  }
  for (const std::string& name : names) {
    git_reference* ref = nullptr;
    int rc = git_reference_lookup(&ref, repo, name.c_str());
    if (rc == GIT_ENOTFOUND || rc == GIT_EINVALIDSPEC) continue;
    if (rc != 0) return LocalGitError(rc, absl::StrCat("reading ref ", name));
    GitPtr<git_reference> owned(ref);
    git_object* peeled = nullptr;
    rc = git_reference_peel(&peeled, ref, GIT_OBJECT_COMMIT);
    if (rc != 0) {
      return absl::NotFoundError(
          absl::StrCat("revision '", revision, "' (", name, ") does not point to a commit"));
    }
    GitPtr<git_object> owned_object(peeled);
    return std::optional<git_oid>(*git_object_id(peeled));
  }
  if (revision.size() >= 4 && IsHex(revision)) {
    git_oid prefix;
    if (git_oid_fromstrn(&prefix, revision.c_str(), revision.size()) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("invalid revision '", revision, "'"));
    }
    git_commit* commit = nullptr;
    int rc = git_commit_lookup_prefix(&commit, repo, &prefix, revision.size());
    if (rc == 0) {
      GitPtr<git_commit> owned(commit);
      return std::optional<git_oid>(*git_commit_id(commit));
    }
    if (rc == GIT_EAMBIGUOUS) {
      return absl::InvalidArgumentError(
          absl::StrCat("revision '", revision, "' is an ambiguous short sha"));
    }
  }
  return std::optional<git_oid>();
}

struct FetchOutcome {
  std::string default_branch;  // e.g. "refs/heads/main" when the revision was empty
};

// Connects to the remote, fetches all branches and tags (plus `extra_refspecs`) into the
// mirror, and prunes what the remote deleted. Nothing about the remote is persisted in the
// mirror's config: the remote is anonymous.
absl::StatusOr<FetchOutcome> FetchIntoMirror(git_repository* repo, const RepositoryUrl& url,
                                             const std::string& revision,
                                             const std::vector<std::string>& extra_refspecs,
                                             TransferContext* ctx) {
  ctx->credential_calls = 0;  // counted per connection
  // Connections opened below wait interruptibly: cancel and a silent remote end them.
  StreamLimits limits{ctx->connect_timeout, ctx->idle_timeout,
                      [ctx] { return ctx->CheckCancelled(); }};
  ScopedStreamLimits scoped_limits(&limits);
  git_remote* raw_remote = nullptr;
  if (int rc = git_remote_create_anonymous(&raw_remote, repo, url.url.c_str()); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("repository URL ", url.url, ": ", LastGitErrorMessage(rc)));
  }
  GitPtr<git_remote> remote(raw_remote);

  git_fetch_options options;
  git_fetch_options_init(&options, GIT_FETCH_OPTIONS_VERSION);
  options.callbacks.transfer_progress = OnTransferProgress;
  options.callbacks.sideband_progress = OnSidebandProgress;
  options.callbacks.credentials = OnCredentials;
  options.callbacks.certificate_check = OnCertificateCheck;
  options.callbacks.payload = ctx;
  options.prune = GIT_FETCH_PRUNE;
  options.update_fetchhead = 0;
  options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;  // tags come from our refspec
  // Loopback and local remotes never go through a proxy; others honour the environment's.
  options.proxy_opts.type =
      url.kind == RepositoryUrl::Kind::kHttps ? GIT_PROXY_AUTO : GIT_PROXY_NONE;
  options.follow_redirects = GIT_REMOTE_REDIRECT_INITIAL;

  if (int rc = git_remote_connect(remote.get(), GIT_DIRECTION_FETCH, &options.callbacks,
                                  &options.proxy_opts, nullptr);
      rc != 0) {
    return RemoteError(rc, *ctx, url);
  }
  FetchOutcome outcome;
  std::vector<std::string> refspecs = {"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"};
  const git_remote_head** heads = nullptr;
  size_t head_count = 0;
  if (int rc = git_remote_ls(&heads, &head_count, remote.get()); rc != 0) {
    return RemoteError(rc, *ctx, url);
  }
  if (revision.empty()) {
    git_buf branch = {};
    if (git_remote_default_branch(&branch, remote.get()) == 0) {
      outcome.default_branch = std::string(branch.ptr, branch.size);
    }
    git_buf_dispose(&branch);
    if (outcome.default_branch.empty()) {
      return absl::NotFoundError(absl::StrCat(url.url, " has no default branch (HEAD)"));
    }
  } else if (absl::StartsWith(revision, "refs/") && !absl::StartsWith(revision, "refs/heads/") &&
             !absl::StartsWith(revision, "refs/tags/")) {
    bool advertised = false;
    for (size_t i = 0; i < head_count; ++i) advertised |= revision == heads[i]->name;
    if (!advertised) {
      return absl::NotFoundError(absl::StrCat("ref '", revision, "' not found in ", url.url));
    }
    refspecs.push_back(absl::StrCat("+", revision, ":", revision));
  }
  for (const std::string& spec : extra_refspecs) refspecs.push_back(spec);

  std::vector<char*> spec_ptrs;
  for (std::string& spec : refspecs) spec_ptrs.push_back(spec.data());
  git_strarray specs = {spec_ptrs.data(), spec_ptrs.size()};
  if (int rc = git_remote_fetch(remote.get(), &specs, &options, "kiln fetch"); rc != 0) {
    return RemoteError(rc, *ctx, url);
  }
  ctx->Report(/*force=*/true);
  return outcome;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SourceCache>> SourceCache::Create(std::string root,
                                                                 SourceCacheOptions options) {
  InitLibgit2();
  if (root.empty()) return absl::InvalidArgumentError("source cache root is empty");
  if (options.max_pack_files < 1) {
    return absl::InvalidArgumentError("max_pack_files must be at least 1");
  }
  if (options.max_fetch_bytes <= 0) {
    return absl::InvalidArgumentError("max_fetch_bytes must be positive");
  }
  std::error_code ec;
  fs::path absolute = fs::absolute(root, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("source cache root ", root, ": ", ec.message()));
  fs::create_directories(absolute, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("creating source cache root ", absolute.string(), ": ", ec.message()));
  }
  std::unique_ptr<ExtraTrust> extra_trust;
  if (!options.extra_ca_file.empty()) {
    ASSIGN_OR_RETURN(extra_trust, ExtraTrust::Load(options.extra_ca_file));
  }
  return std::unique_ptr<SourceCache>(
      new SourceCache(absolute.lexically_normal().string(), options, std::move(extra_trust)));
}

SourceCache::SourceCache(std::string root, SourceCacheOptions options,
                         std::unique_ptr<ExtraTrust> extra_trust)
    : root_(std::move(root)), options_(std::move(options)), extra_trust_(std::move(extra_trust)) {}

SourceCache::~SourceCache() = default;

absl::StatusOr<GitFetchResult> SourceCache::Fetch(
    const GitFetchRequest& request, const std::function<void(const GitFetchProgress&)>& on_progress,
    const std::function<bool()>& cancelled) {
  ASSIGN_OR_RETURN(RepositoryUrl url, ParseRepositoryUrl(request.repository_url));
  RETURN_IF_ERROR(ValidateRevision(request.revision));
  if (request.token.size() > kMaxTokenLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("token is longer than ", kMaxTokenLength, " characters"));
  }
  // Never send a token in clear text to a host off this machine.
  if (!request.token.empty() && url.kind == RepositoryUrl::Kind::kHttp && !url.token_allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to send a token over plain http to ", url.host, "; use https"));
  }
  std::error_code exists_error;
  if (url.kind == RepositoryUrl::Kind::kLocal && !fs::exists(url.local_path, exists_error)) {
    // libgit2 would take a missing path for an unknown URL scheme: say what is really wrong.
    return absl::NotFoundError(absl::StrCat("repository ", url.url, " not found"));
  }
  // Local repositories never ask for credentials: drop the token so no callback can see it.
  const std::string no_token;
  const std::string& token = url.kind == RepositoryUrl::Kind::kLocal ? no_token : request.token;

  std::string dir = absl::StrCat(root_, "/", CacheKey(url));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  ASSIGN_OR_RETURN(
      std::unique_ptr<FileLock> lock,
      FileLock::Acquire(absl::StrCat(dir, "/", kLockFile), options_.lock_timeout, cancelled));

  RemoveStaleGitLocks(dir);

  absl::StatusOr<GitFetchResult> result = [&]() -> absl::StatusOr<GitFetchResult> {
    GitFetchResult result;
    std::string mirror_path = absl::StrCat(dir, "/", kMirrorDir);
    ASSIGN_OR_RETURN(GitPtr<git_repository> repo,
                     OpenOrCreateMirror(mirror_path, &result.mirror_created));

    absl::Time fetch_start = absl::Now();
    TransferContext ctx;
    ctx.on_progress = &on_progress;
    ctx.cancelled = &cancelled;
    ctx.token = &token;
    ctx.origin = &url.origin;
    ctx.extra_trust = extra_trust_.get();
    ctx.max_bytes = options_.max_fetch_bytes;
    ctx.progress_interval = options_.progress_interval;
    ctx.connect_timeout = options_.connect_timeout;
    ctx.idle_timeout = options_.idle_timeout;

    std::optional<git_oid> commit_oid;
    if (IsFullSha(request.revision)) {
      // A commit the mirror already has needs no network at all (retries, rebuilds).
      ASSIGN_OR_RETURN(commit_oid, ResolveLocally(repo.get(), request.revision, ""));
      result.fetch_skipped = commit_oid.has_value();
    }
    if (!commit_oid) {
      ASSIGN_OR_RETURN(FetchOutcome outcome,
                       FetchIntoMirror(repo.get(), url, request.revision, {}, &ctx));
      ASSIGN_OR_RETURN(commit_oid,
                       ResolveLocally(repo.get(), request.revision, outcome.default_branch));
      if (!commit_oid && IsFullSha(request.revision)) {
        // Not on any branch or tag (a pull request's head, a force-pushed-away commit): ask
        // for the object itself. Servers that do not allow it answer with an error.
        std::vector<std::string> by_sha = {absl::StrCat("+", request.revision, ":", kFetchedRef)};
        absl::StatusOr<FetchOutcome> again =
            FetchIntoMirror(repo.get(), url, request.revision, by_sha, &ctx);
        if (!again.ok()) {
          absl::StatusCode code = again.status().code();
          if (code == absl::StatusCode::kCancelled ||
              code == absl::StatusCode::kResourceExhausted ||
              code == absl::StatusCode::kPermissionDenied || code == absl::StatusCode::kDataLoss) {
            return again.status();
          }
          // The remote answered the first fetch, so this is its refusal to serve the sha.
          return absl::NotFoundError(absl::StrCat(
              "revision '", request.revision, "' not found in ", url.url,
              " (on no branch or tag, and fetching it by sha failed: ",
              absl::StripPrefix(again.status().message(), absl::StrCat(url.url, " unreachable: ")),
              ")"));
        }
        ASSIGN_OR_RETURN(commit_oid, ResolveLocally(repo.get(), request.revision, ""));
      }
    }
    if (!commit_oid) {
      return absl::NotFoundError(
          request.revision.empty()
              ? absl::StrCat("no commit at the default branch of ", url.url)
              : absl::StrCat("revision '", request.revision, "' not found in ", url.url));
    }
    result.fetch_duration = absl::Now() - fetch_start;
    result.received_objects = ctx.progress.received_objects;
    result.received_bytes = ctx.progress.received_bytes;
    result.commit_sha = OidHex(*commit_oid);
    ASSIGN_OR_RETURN(result.object_ids, ObjectIds(repo.get(), *commit_oid, request.object_paths));

    absl::Time checkout_start = absl::Now();
    CheckoutPaths paths{absl::StrCat(dir, "/", kTreeDir), absl::StrCat(dir, "/", kIndexFile),
                        absl::StrCat(dir, "/", kCommitFile)};
    ASSIGN_OR_RETURN(result.files_written, CheckOut(mirror_path, *commit_oid, paths, cancelled));
    result.checkout_duration = absl::Now() - checkout_start;
    result.worktree_dir = paths.tree;
    return result;
  }();

  if (!result.ok()) {
    absl::Status status = result.status();
    if (status.code() == absl::StatusCode::kDataLoss) {
      // A cache must never wedge a project: drop the mirror and tree so a retry starts cold.
      fs::remove_all(absl::StrCat(dir, "/", kMirrorDir), ec);
      fs::remove_all(absl::StrCat(dir, "/", kTreeDir), ec);
      fs::remove(absl::StrCat(dir, "/", kIndexFile), ec);
      fs::remove(absl::StrCat(dir, "/", kCommitFile), ec);
      status = absl::DataLossError(
          absl::StrCat(status.message(), " (the cached mirror was removed; a retry fetches anew)"));
    }
    // Defence in depth: no path above puts the token in a message, but never let one out.
    status = absl::Status(status.code(), Redact(status.message(), request.token));
    LogWarn("git.fetch_failed",
            {{"repository", url.normalized}, {"revision", request.revision}, {"status", status}});
    return status;
  }
  // Inside the lock, after the checkout: occasional upkeep that later fetches profit from.
  absl::StatusOr<bool> repacked = RepackIfNeeded(absl::StrCat(dir, "/", kMirrorDir),
                                                 options_.max_pack_files, {result->commit_sha});
  if (!repacked.ok()) {
    LogWarn("git.repack_failed", {{"repository", url.normalized}, {"status", repacked.status()}});
  }
  LogInfo("git.fetched", {{"repository", url.normalized},
                          {"revision", request.revision},
                          {"commit", result->commit_sha},
                          {"mirror_created", result->mirror_created},
                          {"fetch_skipped", result->fetch_skipped},
                          {"received_objects", static_cast<long long>(result->received_objects)},
                          {"received_bytes", static_cast<long long>(result->received_bytes)},
                          {"files_written", static_cast<long long>(result->files_written)},
                          {"fetch", result->fetch_duration},
                          {"checkout", result->checkout_duration}});
  return result;
}

bool IsRetryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:  // the corrupt mirror was removed: a retry starts cold
      return true;
    default:
      return false;
  }
}

}  // namespace kiln::builder
