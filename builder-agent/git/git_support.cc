#include "builder-agent/git/git_support.h"

#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "builder-agent/git/socket_stream.h"

namespace kiln::builder {

void InitLibgit2() {
  static std::once_flag once;
  std::call_once(once, [] {
    git_libgit2_init();
    for (int level : {GIT_CONFIG_LEVEL_PROGRAMDATA, GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                      GIT_CONFIG_LEVEL_GLOBAL}) {
      // Intentionally ignored: a failure leaves libgit2's default search path in place.
      (void)git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, level, "");
    }
    RegisterInterruptibleSocketStream();
  });
}

std::string LastGitErrorMessage(int code) {
  const git_error* error = git_error_last();
  if (error == nullptr || error->message == nullptr || error->message[0] == '\0') {
    return absl::StrCat("libgit2 error ", code);
  }
  return error->message;
}

int LastGitErrorClass() {
  const git_error* error = git_error_last();
  return error == nullptr ? GIT_ERROR_NONE : error->klass;
}

std::string Redact(absl::string_view text, absl::string_view secret) {
  if (secret.empty()) return std::string(text);
  return absl::StrReplaceAll(text, {{secret, "[redacted]"}});
}

std::string OidHex(const git_oid& oid) {
  char hex[GIT_OID_HEXSZ + 1];
  git_oid_tostr(hex, sizeof(hex), &oid);
  return hex;
}

bool IsCorruptionClass(int klass) {
  return klass == GIT_ERROR_ODB || klass == GIT_ERROR_INDEXER || klass == GIT_ERROR_ZLIB ||
         klass == GIT_ERROR_OBJECT;
}

absl::Status LocalGitError(int code, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", LastGitErrorMessage(code));
  if (IsCorruptionClass(LastGitErrorClass())) return absl::DataLossError(message);
  return absl::InternalError(message);
}

std::string Sha1Hex(absl::string_view data) {
  InitLibgit2();
  git_oid oid;
  if (git_odb_hash(&oid, data.data(), data.size(), GIT_OBJECT_BLOB) != 0) return "0";
  return OidHex(oid);
}

}  // namespace kiln::builder
