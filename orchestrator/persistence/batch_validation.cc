#include "orchestrator/persistence/batch_validation.h"

#include "absl/strings/str_cat.h"

namespace kiln::orchestrator {

bool IsKnownTable(Table table) { return static_cast<int>(table) < kTableCount; }

absl::Status ValidateBatch(const WriteBatch& batch) {
  if (batch.size() > kMaxCommitOps) {
    return absl::InvalidArgumentError(
        absl::StrCat("write batch has ", batch.size(), " ops; the limit is ", kMaxCommitOps));
  }
  if (batch.bytes() > kMaxCommitBytes) {
    return absl::InvalidArgumentError(absl::StrCat("write batch holds ", batch.bytes(),
                                                   " bytes; the limit is ", kMaxCommitBytes));
  }
  for (const WriteBatch::Op& op : batch.ops()) {
    if (!IsKnownTable(op.table)) {
      return absl::InvalidArgumentError(
          absl::StrCat("write batch names unknown table ", static_cast<int>(op.table)));
    }
    if (op.key.size() > kMaxKeyBytes) {
      return absl::InvalidArgumentError(absl::StrCat("key of ", op.key.size(), " bytes in table ",
                                                     TableName(op.table), "; the limit is ",
                                                     kMaxKeyBytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::orchestrator
