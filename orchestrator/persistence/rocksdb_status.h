// Translation of rocksdb::Status into absl::Status, so that RocksDB's error vocabulary stops
// at the RocksDbStore boundary and callers see the codes store.h promises.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "rocksdb/status.h"

namespace kiln::orchestrator {

// Maps `status` to the closest absl code, keeping RocksDB's message after `context`:
// corruption -> kDataLoss, IO errors -> kUnavailable, out of space -> kResourceExhausted, ...
absl::Status FromRocksDb(const rocksdb::Status& status, std::string_view context);

// For a failed write: an IO error may strike after the batch reached the WAL (a failed fsync),
// so it is reported as kUnavailable "outcome unknown", as Store::Commit documents; other
// failures map as in FromRocksDb.
absl::Status FromRocksDbWrite(const rocksdb::Status& status);

}  // namespace kiln::orchestrator
