#include "builder-agent/git/work_tree.h"

#include <git2/sys/repository.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "builder-agent/git/git_support.h"
#include "common/logging.h"
#include "common/status.h"

namespace kiln::builder {
namespace {

namespace fs = std::filesystem;

bool IsFullSha(absl::string_view s) {
  if (s.size() != GIT_OID_HEXSZ) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
    if (!out.good()) return absl::InternalError(absl::StrCat("writing ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("renaming ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  return content;
}

struct CheckoutContext {
  const std::function<bool()>* cancelled = nullptr;
  int64_t files_written = 0;
  bool was_cancelled = false;
};

int OnCheckoutNotify(git_checkout_notify_t why, const char*, const git_diff_file*,
                     const git_diff_file*, const git_diff_file*, void* payload) {
  auto* ctx = static_cast<CheckoutContext*>(payload);
  if (why == GIT_CHECKOUT_NOTIFY_UPDATED) ++ctx->files_written;
  if (*ctx->cancelled && (*ctx->cancelled)()) {
    ctx->was_cancelled = true;
    return GIT_EUSER;
  }
  return 0;
}

// The tree of the commit the work tree held after the last complete checkout, or the empty
// tree when unknown (first checkout, or one interrupted): then every file is written.
absl::StatusOr<GitPtr<git_tree>> BaselineTree(git_repository* repo, const CheckoutPaths& paths,
                                              git_index* index) {
  std::string recorded = ReadSmallFile(paths.commit);
  git_oid oid;
  if (IsFullSha(recorded) && git_oid_fromstr(&oid, recorded.c_str()) == 0) {
    git_commit* commit = nullptr;
    if (git_commit_lookup(&commit, repo, &oid) == 0) {
      GitPtr<git_commit> owned(commit);
      git_tree* tree = nullptr;
      if (int rc = git_commit_tree(&tree, commit); rc != 0) {
        return LocalGitError(rc, "reading the work tree's baseline");
      }
      return GitPtr<git_tree>(tree);
    }
  }
  // The index's stat cache may describe files that are no longer there: start clean.
  if (int rc = git_index_clear(index); rc != 0) return LocalGitError(rc, "clearing the index");
  git_treebuilder* builder = nullptr;
  if (int rc = git_treebuilder_new(&builder, repo, nullptr); rc != 0) {
    return LocalGitError(rc, "making the empty tree");
  }
  GitPtr<git_treebuilder> owned_builder(builder);
  git_oid empty;
  if (int rc = git_treebuilder_write(&empty, builder); rc != 0) {
    return LocalGitError(rc, "writing the empty tree");
  }
  git_tree* tree = nullptr;
  if (int rc = git_tree_lookup(&tree, repo, &empty); rc != 0) {
    return LocalGitError(rc, "reading the empty tree");
  }
  return GitPtr<git_tree>(tree);
}

}  // namespace

absl::StatusOr<int64_t> CheckOut(const std::string& mirror_path, const git_oid& commit_oid,
                                 const CheckoutPaths& paths,
                                 const std::function<bool()>& cancelled) {
  std::error_code ec;
  fs::create_directories(paths.tree, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", paths.tree, ": ", ec.message()));
  // A separate handle: the work tree and index are attached to it only, never persisted in
  // the mirror's config, so the mirror stays a plain bare repository.
  git_repository* raw_repo = nullptr;
  if (int rc = git_repository_open_bare(&raw_repo, mirror_path.c_str()); rc != 0) {
    return LocalGitError(rc, absl::StrCat("opening mirror ", mirror_path));
  }
  GitPtr<git_repository> repo(raw_repo);
  git_index* raw_index = nullptr;
  if (int rc = git_index_open(&raw_index, paths.index.c_str()); rc != 0) {
    // The index is only a cache of what the tree holds: when it cannot be read (torn by a
    // crash), drop it and the record of the tree's commit, so that this checkout rewrites
    // every file, and carry on.
    LogWarn("git.index_unreadable", {{"path", paths.index}, {"error", LastGitErrorMessage(rc)}});
    std::error_code ignored;
    fs::remove(paths.index, ignored);
    fs::remove(paths.commit, ignored);
    if (int again = git_index_open(&raw_index, paths.index.c_str()); again != 0) {
      return LocalGitError(again, absl::StrCat("opening ", paths.index));
    }
  }
  GitPtr<git_index> index(raw_index);
  if (int rc = git_repository_set_index(repo.get(), index.get()); rc != 0) {
    return LocalGitError(rc, "attaching the index");
  }
  if (int rc = git_repository_set_workdir(repo.get(), paths.tree.c_str(), 0); rc != 0) {
    return LocalGitError(rc, "attaching the work tree");
  }
  ASSIGN_OR_RETURN(GitPtr<git_tree> baseline, BaselineTree(repo.get(), paths, index.get()));
  git_commit* raw_commit = nullptr;
  if (int rc = git_commit_lookup(&raw_commit, repo.get(), &commit_oid); rc != 0) {
    return LocalGitError(rc, absl::StrCat("reading commit ", OidHex(commit_oid)));
  }
  GitPtr<git_commit> commit(raw_commit);

  // Until the checkout completes, the tree matches neither commit.
  if (::unlink(paths.commit.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("removing ", paths.commit, ": ", std::strerror(errno)));
  }
  CheckoutContext ctx;
  ctx.cancelled = &cancelled;
  git_checkout_options options;
  git_checkout_options_init(&options, GIT_CHECKOUT_OPTIONS_VERSION);
  options.checkout_strategy =
      GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED | GIT_CHECKOUT_REMOVE_IGNORED;
  options.baseline = baseline.get();
  options.notify_flags = GIT_CHECKOUT_NOTIFY_UPDATED | GIT_CHECKOUT_NOTIFY_DIRTY |
                         GIT_CHECKOUT_NOTIFY_UNTRACKED | GIT_CHECKOUT_NOTIFY_IGNORED |
                         GIT_CHECKOUT_NOTIFY_CONFLICT;
  options.notify_cb = OnCheckoutNotify;
  options.notify_payload = &ctx;
  int rc =
      git_checkout_tree(repo.get(), reinterpret_cast<const git_object*>(commit.get()), &options);
  if (ctx.was_cancelled) return absl::CancelledError("checkout cancelled");
  if (rc != 0) return LocalGitError(rc, absl::StrCat("checking out ", OidHex(commit_oid)));
  RETURN_IF_ERROR(WriteFileAtomically(paths.commit, OidHex(commit_oid) + "\n"));
  return ctx.files_written;
}

}  // namespace kiln::builder
