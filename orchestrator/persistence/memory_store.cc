#include "orchestrator/persistence/memory_store.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "orchestrator/persistence/batch_validation.h"

namespace kiln::orchestrator {
namespace {

absl::Status CheckTable(Table table) {
  if (IsKnownTable(table)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("unknown table ", static_cast<int>(table)));
}

}  // namespace

absl::Status MemoryStore::Commit(const WriteBatch& batch) {
  // Validation happens before any op is applied: that is what makes a refused batch leave
  // nothing behind. Applying the ops of a valid batch cannot fail.
  if (absl::Status valid = ValidateBatch(batch); !valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  for (const WriteBatch::Op& op : batch.ops()) {
    TableMap& table = tables_[static_cast<size_t>(op.table)];
    auto it = table.find(op.key);
    if (it != table.end()) {
      bytes_ -= it->first.size() + it->second.size();
    }
    if (op.type == WriteBatch::OpType::kPut) {
      if (it == table.end()) {
        it = table.emplace(op.key, op.value).first;
      } else {
        it->second = op.value;
      }
      bytes_ += it->first.size() + it->second.size();
    } else if (it != table.end()) {
      table.erase(it);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> MemoryStore::Get(Table table, std::string_view key) {
  if (absl::Status valid = CheckTable(table); !valid.ok()) return valid;
  absl::ReaderMutexLock lock(&mu_);
  const TableMap& map = tables_[static_cast<size_t>(table)];
  auto it = map.find(key);
  if (it == map.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::StatusOr<MemoryStore::Entries> MemoryStore::CopyRange(Table table, std::string_view start,
                                                            std::string_view end, size_t limit,
                                                            bool reverse) {
  if (absl::Status valid = CheckTable(table); !valid.ok()) return valid;
  Entries entries;
  if (!end.empty() && end <= start) return entries;
  absl::ReaderMutexLock lock(&mu_);
  const TableMap& map = tables_[static_cast<size_t>(table)];
  auto first = map.lower_bound(start);
  auto last = end.empty() ? map.end() : map.lower_bound(end);
  auto full = [&] { return limit != 0 && entries.size() >= limit; };
  if (!reverse) {
    for (auto it = first; it != last && !full(); ++it) entries.emplace_back(*it);
  } else {
    for (auto it = last; it != first && !full();) {
      --it;
      entries.emplace_back(*it);
    }
  }
  return entries;
}

absl::Status MemoryStore::Scan(Table table, std::string_view start, std::string_view end,
                               size_t limit, const ScanVisitor& visit) {
  absl::StatusOr<Entries> entries = CopyRange(table, start, end, limit, /*reverse=*/false);
  if (!entries.ok()) return entries.status();
  for (const auto& [key, value] : *entries) {
    if (!visit(key, value)) break;
  }
  return absl::OkStatus();
}

absl::Status MemoryStore::ReverseScan(Table table, std::string_view start, std::string_view end,
                                      size_t limit, const ScanVisitor& visit) {
  absl::StatusOr<Entries> entries = CopyRange(table, start, end, limit, /*reverse=*/true);
  if (!entries.ok()) return entries.status();
  for (const auto& [key, value] : *entries) {
    if (!visit(key, value)) break;
  }
  return absl::OkStatus();
}

uint64_t MemoryStore::ApproximateSize() {
  absl::ReaderMutexLock lock(&mu_);
  return bytes_;
}

}  // namespace kiln::orchestrator
