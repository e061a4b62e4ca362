#include "orchestrator/rpc/revoked_tokens.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "kiln/internal/v1/persistence.pb.h"
#include "orchestrator/persistence/keys.h"

namespace kiln::orchestrator {

absl::StatusOr<std::unique_ptr<RevokedTokens>> RevokedTokens::Load(Store* store, Clock* clock) {
  std::unique_ptr<RevokedTokens> revoked(new RevokedTokens(store, clock));
  const std::string prefix = keys::RevokedTokenPrefix();
  const absl::Time now = clock->Now();
  WriteBatch expired;
  absl::Status corrupt;
  absl::flat_hash_map<std::string, absl::Time> unexpired;
  RETURN_IF_ERROR(
      store->Scan(Table::kMeta, prefix, keys::PrefixEnd(prefix), 0,
                  [&](std::string_view key, std::string_view value) {
                    kiln::internal::v1::RevokedToken record;
                    if (!record.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
                        key.substr(prefix.size()) != record.id()) {
                      corrupt = absl::DataLossError(
                          absl::StrCat("revoked token record '", std::string(key), "' is corrupt"));
                      return false;
                    }
                    absl::Time expiry = FromProto(record.expire_time());
                    if (expiry <= now) {
                      expired.Delete(Table::kMeta, std::string(key));
                    } else {
                      unexpired[record.id()] = expiry;
                    }
                    return true;
                  }));
  RETURN_IF_ERROR(corrupt);
  if (!expired.empty()) {
    // Dropping them can wait for a later start or Revoke: a store that cannot write now (a full
    // disk) must not stop the orchestrator from starting.
    if (absl::Status dropped = store->Commit(expired); !dropped.ok()) {
      LogWarn("auth.revoked_tokens_not_pruned", {{"status", dropped}});
    }
  }
  absl::MutexLock lock(&revoked->mu_);
  revoked->expiry_ = std::move(unexpired);
  return revoked;
}

bool RevokedTokens::Contains(const std::string& id) const {
  absl::ReaderMutexLock lock(&mu_);
  return expiry_.contains(id);
}

size_t RevokedTokens::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return expiry_.size();
}

absl::StatusOr<bool> RevokedTokens::Revoke(const std::string& id, absl::Time expiry) {
  absl::MutexLock write(&write_mu_);
  const absl::Time now = clock_->Now();
  std::vector<std::string> expired;
  {
    absl::MutexLock lock(&mu_);
    if (expiry_.contains(id)) return true;
    for (const auto& [revoked_id, until] : expiry_) {
      if (until <= now) expired.push_back(revoked_id);
    }
    if (expiry_.size() - expired.size() >= limits::kMaxRevokedTokens) {
      return absl::ResourceExhaustedError(
          absl::StrCat(limits::kMaxRevokedTokens,
                       " revoked tokens have not expired yet: replace the signing key (auth.key) "
                       "to revoke every token at once"));
    }
  }
  kiln::internal::v1::RevokedToken record;
  record.set_id(id);
  ToProto(expiry, record.mutable_expire_time());
  ToProto(now, record.mutable_revoke_time());
  WriteBatch batch;
  batch.Put(Table::kMeta, keys::RevokedToken(id), record.SerializeAsString());
  for (const std::string& gone : expired) batch.Delete(Table::kMeta, keys::RevokedToken(gone));
  RETURN_IF_ERROR(store_->Commit(batch));
  absl::MutexLock lock(&mu_);
  for (const std::string& gone : expired) expiry_.erase(gone);
  expiry_[id] = expiry;
  return false;
}

}  // namespace kiln::orchestrator
