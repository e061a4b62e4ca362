// What a GitHub webhook delivery asks Kiln to do, read from its event name and JSON body
// (proto/kiln/platform/v1/github.proto mirrors the fields read). Pure: no I/O, no backend, so
// each rule below is unit-tested on its own. Call only on a body whose signature was checked.
//
//   ping                                  kPing
//   push, refs/heads/<b>, a new head      kPush (branch, after, head_commit's tree and message)
//   push, refs/heads/<b>, deleted=true or after=0…0
//                                         kDeleteBranch
//   push of a tag or any other ref        kIgnore
//   delete, ref_type branch               kDeleteBranch
//   delete, ref_type tag                  kIgnore
// kInvalidArgument: another event, malformed JSON, or a payload missing what its event needs
// (no repository, no ref, an after that is not a commit id).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::worker {

// Ceilings on what a delivery may carry into the backend and the logs.
inline constexpr size_t kMaxGithubRefBytes = 1024;
inline constexpr size_t kMaxGithubMessageBytes = 4096;

enum class GithubAction { kPing, kPush, kDeleteBranch, kIgnore };

struct GithubDelivery {
  GithubAction action = GithubAction::kIgnore;
  // The repository's clone_url, html_url, ssh_url and git_url, those present. Empty only for a
  // ping from an organisation's hook.
  std::vector<std::string> repository_urls;
  std::string repository_name;  // full_name, for answers and logs.
  std::string branch;           // kPush, kDeleteBranch: without refs/heads/.
  std::string commit_sha;       // kPush
  std::string tree_id;          // kPush; empty when head_commit is absent.
  std::string message;          // kPush: head_commit.message's first line, bounded.
  std::string pusher;           // kPush
  std::string ignore_reason;    // kIgnore
  std::string zen;              // kPing
};

absl::StatusOr<GithubDelivery> ParseGithubDelivery(std::string_view event, std::string_view body);

// A repository URL in the form two spellings of one repository share: a trailing "/" and then
// ".git" dropped, the scheme and host lower-cased ("https://GitHub.com/o/r.git/" and
// "https://github.com/o/r" agree; so do "git@GitHub.com:o/r.git" and "git@github.com:o/r").
// A local path or a file:// URL is returned as it is. The path keeps its case.
std::string NormalizeRepositoryUrl(std::string_view url);

// Whether any of `delivery_urls` names `project_url` after normalisation.
bool RepositoryMatches(const std::vector<std::string>& delivery_urls, std::string_view project_url);

}  // namespace kiln::worker
