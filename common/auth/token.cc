#include "common/auth/token.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <map>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace kiln::auth {
namespace {

using namespace token_limits;  // NOLINT: the limits are this file's vocabulary.

constexpr std::string_view kPrefix = "kiln1.";
constexpr std::string_view kVersion = "1";

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Unauthenticated(std::string_view reason) {
  return absl::UnauthenticatedError(absl::StrCat("invalid token: ", Absl(reason)));
}

// Printable ASCII without spaces: the payload is lines of key=value and a field never needs more.
bool ValidField(std::string_view value) {
  if (value.size() > kMaxFieldBytes) return false;
  for (char c : value) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

std::string JoinQueues(const std::vector<std::string>& queues) {
  std::string joined;
  for (const std::string& queue : queues)
    absl::StrAppend(&joined, joined.empty() ? "" : ",", queue);
  return joined;
}

std::string Errno(std::string_view what, const std::string& path) {
  return absl::StrCat(Absl(what), " '", path, "': ", std::strerror(errno));
}

// The rules Mint and Verify share; `fail` builds the error.
template <typename Fail>
absl::Status CheckClaims(const Claims& claims, Fail fail) {
  if (!ValidField(claims.project) || !ValidField(claims.subject) || !ValidField(claims.id)) {
    return fail("a field is too long or holds characters other than printable ASCII");
  }
  if ((claims.scope == Scope::kAgent) != !claims.project.empty()) {
    return fail("an agent token names exactly one project; other scopes name none");
  }
  if (claims.scope != Scope::kWorker && !claims.queues.empty()) {
    return fail("only a worker token names task queues");
  }
  for (const std::string& queue : claims.queues) {
    if (queue.empty() || !ValidField(queue) || queue.find(',') != std::string::npos) {
      return fail("a task queue of the token is empty, too long or holds a comma or space");
    }
  }
  if (JoinQueues(claims.queues).size() > kMaxFieldBytes) {
    return fail("the token's task queues are too long together");
  }
  const absl::Duration lifetime = claims.expiry - claims.issued;
  if (lifetime <= absl::ZeroDuration() || lifetime > kMaxLifetime) {
    return fail("lifetime must be positive and at most 366 days");
  }
  return absl::OkStatus();
}

}  // namespace

class TokenKey::Hmac {
 public:
  explicit Hmac(const std::string& key) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr) return;
    prepared_ = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // The context holds its own reference.
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_END};
    if (prepared_ != nullptr &&
        EVP_MAC_init(prepared_, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     params) != 1) {
      EVP_MAC_CTX_free(prepared_);
      prepared_ = nullptr;
    }
  }
  ~Hmac() { EVP_MAC_CTX_free(prepared_); }
  Hmac(const Hmac&) = delete;
  Hmac& operator=(const Hmac&) = delete;

  // HMAC-SHA256 over the concatenation of `parts`: 32 bytes. Any thread.
  std::string Compute(const std::string& key, std::initializer_list<std::string_view> parts) const {
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC_CTX* ctx = prepared_ == nullptr ? nullptr : EVP_MAC_CTX_dup(prepared_);
    bool ok = ctx != nullptr;
    for (std::string_view part : parts) {
      ok = ok && EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(part.data()),
                                part.size()) == 1;
    }
    ok = ok && EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) == 1;
    EVP_MAC_CTX_free(ctx);
    if (ok) return std::string(reinterpret_cast<const char*>(mac), mac_len);
    // Set-up or copy failed (out of memory): the one-shot form, same bytes.
    std::string input;
    for (std::string_view part : parts) input.append(part);
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return std::string(reinterpret_cast<const char*>(mac), len);
  }

 private:
  EVP_MAC_CTX* prepared_ = nullptr;  // Keyed; never updated, only copied.
};

TokenKey::TokenKey(std::string bytes)
    : bytes_(std::move(bytes)), hmac_(std::make_shared<const Hmac>(bytes_)) {}

bool ServesQueue(const std::vector<std::string>& queues, std::string_view queue) {
  for (const std::string& entry : queues) {
    if (entry == queue) return true;
    if (!entry.empty() && entry.back() == '*' &&
        queue.substr(0, entry.size() - 1) == std::string_view(entry).substr(0, entry.size() - 1)) {
      return true;
    }
  }
  return false;
}

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kAdmin:
      return "admin";
    case Scope::kWorker:
      return "worker";
    case Scope::kAgent:
      return "agent";
    case Scope::kReadOnly:
      return "read-only";
  }
  return "unknown";
}

absl::StatusOr<Scope> ParseScope(std::string_view name) {
  for (Scope scope : {Scope::kAdmin, Scope::kWorker, Scope::kAgent, Scope::kReadOnly}) {
    if (ScopeName(scope) == name) return scope;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown scope '",
                                                 Absl(name.substr(0, kMaxFieldBytes)),
                                                 "' (admin, worker, agent or read-only)"));
}

absl::StatusOr<TokenKey> TokenKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a token key is ", kKeyBytes, " bytes"));
  }
  return TokenKey(std::string(bytes));
}

absl::StatusOr<TokenKey> TokenKey::Load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(Errno("auth key file", path));
    return absl::FailedPreconditionError(Errno("cannot open auth key file", path));
  }
  struct stat st = {};
  absl::Status status;
  std::string bytes(kKeyBytes, '\0');
  if (::fstat(fd, &st) != 0) {
    status = absl::FailedPreconditionError(Errno("cannot stat auth key file", path));
  } else if (!S_ISREG(st.st_mode)) {
    status = absl::FailedPreconditionError(
        absl::StrCat("auth key file '", path, "' is not a regular file"));
  } else if ((st.st_mode & 077) != 0) {
    status = absl::FailedPreconditionError(absl::StrFormat(
        "auth key file '%s' is accessible by group or others (mode %04o): chmod 600 it", path,
        st.st_mode & 07777));
  } else if (static_cast<size_t>(st.st_size) != kKeyBytes) {
    status = absl::FailedPreconditionError(
        absl::StrCat("auth key file '", path, "' holds ", st.st_size, " bytes, not ", kKeyBytes));
  } else if (::pread(fd, bytes.data(), kKeyBytes, 0) != static_cast<ssize_t>(kKeyBytes)) {
    status = absl::FailedPreconditionError(Errno("cannot read auth key file", path));
  }
  ::close(fd);
  if (!status.ok()) return status;
  return TokenKey(std::move(bytes));
}

absl::StatusOr<TokenKey> TokenKey::LoadOrCreate(const std::string& path) {
  absl::StatusOr<TokenKey> loaded = Load(path);
  if (!absl::IsNotFound(loaded.status())) return loaded;

  // The key's directory (often the data directory, before the server's first start).
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (std::error_code ec;
      !parent.empty() && !std::filesystem::create_directories(parent, ec) && ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the directory of auth key file '", path, "': ", ec.message()));
  }
  std::string bytes(kKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), kKeyBytes) != 1) {
    return absl::InternalError("RAND_bytes failed to make an auth key");
  }
  // Written under a temporary name and linked into place: the key file never exists half
  // written, and link (unlike rename) fails if another process created the key meanwhile.
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError(Errno("cannot create auth key file", tmp));
  bool written = ::write(fd, bytes.data(), kKeyBytes) == static_cast<ssize_t>(kKeyBytes) &&
                 ::fchmod(fd, 0600) == 0 && ::fsync(fd) == 0;
  std::string error = written ? "" : Errno("cannot write auth key file", tmp);
  ::close(fd);
  if (written && ::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    written = false;
    error = Errno("cannot create auth key file", path);
  }
  ::unlink(tmp.c_str());
  if (!written) return absl::FailedPreconditionError(error);
  // Make the new name durable.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  if (int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    (void)::fsync(dir_fd);  // Best effort: the key is already in place.
    ::close(dir_fd);
  }
  return Load(path);  // The key that won, whoever wrote it.
}

std::string TokenKey::Sign(std::string_view signed_part) const {
  return absl::WebSafeBase64Escape(hmac_->Compute(bytes_, {signed_part}));
}

std::string TokenKey::Mac(std::string_view domain, std::string_view message) const {
  return hmac_->Compute(bytes_, {domain, "\n", message});
}

absl::StatusOr<std::string> TokenKey::Mint(const Claims& claims) const {
  Claims c = claims;
  if (c.id.empty()) {
    unsigned char random[12];
    if (RAND_bytes(random, sizeof(random)) != 1) {
      return absl::InternalError("RAND_bytes failed to make a token id");
    }
    c.id = absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(random), sizeof(random)));
  }
  if (absl::Status valid = CheckClaims(
          c, [](std::string_view why) { return absl::InvalidArgumentError(Absl(why)); });
      !valid.ok()) {
    return valid;
  }
  std::string payload =
      absl::StrCat("v=", Absl(kVersion), "\nscope=", Absl(ScopeName(c.scope)), "\nsub=", c.subject,
                   "\nid=", c.id, "\niat=", absl::ToUnixSeconds(c.issued),
                   "\nexp=", absl::ToUnixSeconds(c.expiry));
  if (!c.project.empty()) absl::StrAppend(&payload, "\nproject=", c.project);
  if (!c.queues.empty()) absl::StrAppend(&payload, "\nqueues=", JoinQueues(c.queues));
  std::string token = absl::StrCat(Absl(kPrefix), absl::WebSafeBase64Escape(payload));
  std::string signature = Sign(token);
  absl::StrAppend(&token, ".", signature);
  if (token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token would be longer than ", kMaxTokenBytes, " bytes"));
  }
  return token;
}

absl::StatusOr<Claims> TokenKey::Verify(std::string_view token, absl::Time now) const {
  if (token.size() > kMaxTokenBytes) return Unauthenticated("token too long");
  if (token.substr(0, kPrefix.size()) != kPrefix) return Unauthenticated("malformed token");
  const size_t dot = token.rfind('.');
  if (dot < kPrefix.size()) return Unauthenticated("malformed token");
  const std::string_view signed_part = token.substr(0, dot);
  const std::string_view signature = token.substr(dot + 1);
  // The signature is checked before the payload is even decoded.
  const std::string expected = Sign(signed_part);
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return Unauthenticated("bad signature");
  }
  std::string payload;
  if (!absl::WebSafeBase64Unescape(Absl(signed_part.substr(kPrefix.size())), &payload)) {
    return Unauthenticated("malformed payload");
  }
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(payload, '\n')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first.empty() || !ValidField(kv.second) || !fields.emplace(kv).second) {
      return Unauthenticated("malformed payload");
    }
  }
  for (const auto& [key, value] : fields) {
    if (key != "v" && key != "scope" && key != "project" && key != "sub" && key != "id" &&
        key != "iat" && key != "exp" && key != "queues") {
      return Unauthenticated("malformed payload");
    }
  }
  if (fields["v"] != kVersion) return Unauthenticated("unknown token version");
  absl::StatusOr<Scope> scope = ParseScope(fields["scope"]);
  if (!scope.ok()) return Unauthenticated("unknown scope");
  int64_t iat = 0, exp = 0;
  if (!absl::SimpleAtoi(fields["iat"], &iat) || !absl::SimpleAtoi(fields["exp"], &exp)) {
    return Unauthenticated("malformed payload");
  }
  Claims claims;
  claims.scope = *scope;
  claims.project = fields["project"];
  claims.subject = fields["sub"];
  claims.id = fields["id"];
  if (!fields["queues"].empty()) {
    claims.queues = absl::StrSplit(fields["queues"], ',');
  }
  claims.issued = absl::FromUnixSeconds(iat);
  claims.expiry = absl::FromUnixSeconds(exp);
  if (absl::Status valid = CheckClaims(claims, Unauthenticated); !valid.ok()) return valid;
  if (now >= claims.expiry) return Unauthenticated("token expired");
  if (claims.issued > now + kMaxClockSkew) return Unauthenticated("token issued in the future");
  return claims;
}

}  // namespace kiln::auth
