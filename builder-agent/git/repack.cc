#include "builder-agent/git/repack.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "builder-agent/git/git_support.h"
#include "common/logging.h"

namespace kiln::builder {
namespace {

namespace fs = std::filesystem;

struct GitPackFree {
  void operator()(git_packbuilder* p) const { git_packbuilder_free(p); }
  void operator()(git_revwalk* p) const { git_revwalk_free(p); }
};

absl::Status GitFailure(int code, absl::string_view what) {
  return absl::InternalError(absl::StrCat("repacking: ", what, ": ", LastGitErrorMessage(code)));
}

struct WalkInput {
  git_repository* repo;
  git_revwalk* walk;
  git_packbuilder* packer;
  int error = 0;
};

// Feeds one ref to the pack: commits through the walk (history, trees, blobs), annotated tags
// as objects of their own. Refs to other objects (a tag of a tree) are packed recursively.
int AddRef(git_reference* ref, void* payload) {
  auto* input = static_cast<WalkInput*>(payload);
  GitPtr<git_reference> owned(ref);
  if (git_reference_type(ref) != GIT_REFERENCE_DIRECT) return 0;
  const git_oid* target = git_reference_target(ref);
  git_object* object = nullptr;
  if (git_object_lookup(&object, input->repo, target, GIT_OBJECT_ANY) != 0) return 0;
  GitPtr<git_object> owned_object(object);
  int rc = 0;
  if (git_object_type(object) == GIT_OBJECT_COMMIT) {
    rc = git_revwalk_push(input->walk, target);
  } else {
    rc = git_packbuilder_insert_recur(input->packer, target, nullptr);
    git_object* peeled = nullptr;
    if (rc == 0 && git_object_peel(&peeled, object, GIT_OBJECT_COMMIT) == 0) {
      rc = git_revwalk_push(input->walk, git_object_id(peeled));
      git_object_free(peeled);
    }
  }
  if (rc != 0) input->error = rc;
  return rc;
}

}  // namespace

int CountPackFiles(const std::string& mirror_path) {
  std::error_code ec;
  int count = 0;
  for (auto it = fs::directory_iterator(mirror_path + "/objects/pack", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".pack") ++count;
  }
  return count;
}

absl::StatusOr<bool> RepackIfNeeded(const std::string& mirror_path, int max_pack_files,
                                    const std::vector<std::string>& keep_commits) {
  int before = CountPackFiles(mirror_path);
  if (before <= max_pack_files) return false;
  absl::Time start = absl::Now();
  std::string pack_dir = mirror_path + "/objects/pack";
  std::string new_pack;
  {
    git_repository* raw_repo = nullptr;
    if (int rc = git_repository_open_bare(&raw_repo, mirror_path.c_str()); rc != 0) {
      return GitFailure(rc, "opening the mirror");
    }
    GitPtr<git_repository> repo(raw_repo);
    git_packbuilder* raw_packer = nullptr;
    if (int rc = git_packbuilder_new(&raw_packer, repo.get()); rc != 0) {
      return GitFailure(rc, "starting a pack");
    }
    std::unique_ptr<git_packbuilder, GitPackFree> packer(raw_packer);
    git_revwalk* raw_walk = nullptr;
    if (int rc = git_revwalk_new(&raw_walk, repo.get()); rc != 0) {
      return GitFailure(rc, "starting a walk");
    }
    std::unique_ptr<git_revwalk, GitPackFree> walk(raw_walk);
    WalkInput input{repo.get(), walk.get(), packer.get()};
    if (int rc = git_reference_foreach(repo.get(), AddRef, &input); rc != 0) {
      return GitFailure(input.error != 0 ? input.error : rc, "walking the refs");
    }
    for (const std::string& sha : keep_commits) {
      git_oid oid;
      git_commit* commit = nullptr;
      if (git_oid_fromstr(&oid, sha.c_str()) != 0) continue;
      if (git_commit_lookup(&commit, repo.get(), &oid) != 0) continue;  // gone already
      git_commit_free(commit);
      if (int rc = git_revwalk_push(walk.get(), &oid); rc != 0) {
        return GitFailure(rc, "adding a kept commit");
      }
    }
    if (int rc = git_packbuilder_insert_walk(packer.get(), walk.get()); rc != 0) {
      return GitFailure(rc, "collecting objects");
    }
    if (int rc = git_packbuilder_write(packer.get(), pack_dir.c_str(), 0444, nullptr, nullptr);
        rc != 0) {
      return GitFailure(rc, "writing the pack");
    }
    new_pack = absl::StrCat("pack-", git_packbuilder_name(packer.get()));
  }
  // The new pack is complete (written and renamed into place by libgit2) before any old one
  // goes: a crash in between leaves duplicates, never missing objects.
  std::error_code ec;
  std::vector<fs::path> old_packs;
  for (auto it = fs::directory_iterator(pack_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (it->path().extension() == ".pack" && name != new_pack + ".pack") {
      old_packs.push_back(it->path());
    }
  }
  for (const fs::path& pack : old_packs) {
    // The index first: libgit2 ignores a pack without an index, not an index without a pack.
    for (const char* extension : {".idx", ".rev", ".keep", ".pack"}) {
      std::error_code remove_error;
      fs::remove(fs::path(pack).replace_extension(extension), remove_error);
    }
  }
  LogInfo("git.repacked", {{"mirror", mirror_path},
                           {"packs_before", before},
                           {"packs_after", CountPackFiles(mirror_path)},
                           {"duration", absl::Now() - start}});
  return true;
}

}  // namespace kiln::builder
