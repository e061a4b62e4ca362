#include "orchestrator/persistence/rocksdb_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {
namespace {

absl::StatusCode CodeOf(const rocksdb::Status& status) {
  switch (status.code()) {
    case rocksdb::Status::kOk:
      return absl::StatusCode::kOk;
    case rocksdb::Status::kNotFound:
      return absl::StatusCode::kNotFound;
    case rocksdb::Status::kCorruption:
      return absl::StatusCode::kDataLoss;
    case rocksdb::Status::kNotSupported:
      return absl::StatusCode::kUnimplemented;
    case rocksdb::Status::kInvalidArgument:
      return absl::StatusCode::kInvalidArgument;
    case rocksdb::Status::kIOError:
      // A full disk is a resource problem an operator can fix; other IO errors are transient
      // or need a reload, which is what kUnavailable tells callers.
      if (status.subcode() == rocksdb::Status::kNoSpace ||
          status.subcode() == rocksdb::Status::kSpaceLimit) {
        return absl::StatusCode::kResourceExhausted;
      }
      return absl::StatusCode::kUnavailable;
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kExpired:
      return absl::StatusCode::kDeadlineExceeded;
    case rocksdb::Status::kAborted:
      return absl::StatusCode::kAborted;
    case rocksdb::Status::kShutdownInProgress:
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
      return absl::StatusCode::kUnavailable;
    case rocksdb::Status::kCompactionTooLarge:
      return absl::StatusCode::kResourceExhausted;
    case rocksdb::Status::kMergeInProgress:
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kColumnFamilyDropped:
      return absl::StatusCode::kInternal;
    default:
      return absl::StatusCode::kUnknown;
  }
}

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(CodeOf(status), absl::StrCat(std::string(context), ": ", status.ToString()));
}

absl::Status FromRocksDbWrite(const rocksdb::Status& status) {
  if (status.ok()) return absl::OkStatus();
  if (status.IsIOError()) {
    // Even ENOSPC lands here: RocksDB may have appended the batch before the sync failed, and
    // the caller must not assume either outcome.
    return absl::UnavailableError(
        absl::StrCat("commit outcome unknown (storage IO error): ", status.ToString()));
  }
  return FromRocksDb(status, "commit failed");
}

}  // namespace kiln::orchestrator
