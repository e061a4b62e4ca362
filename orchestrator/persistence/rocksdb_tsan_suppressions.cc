// ThreadSanitizer suppressions built into the binaries that drive RocksDB from several threads
// (the tsan preset sets halt_on_error=1 and has no suppressions file of its own).
//
// Debian's librocksdb is not built with TSan, so the atomics that order its write groups,
// concurrent memtable inserts and iterator reads are invisible to it, and it reports races that
// are not there:
// - accesses made inside librocksdb (memtable inserts, iterators): "race:librocksdb.so";
// - a write-group leader appending the followers' batches into one WAL record, which happens in
//   std::string::append in libstdc++ with no librocksdb frame left on TSan's stack (TSan only
//   records frames of instrumented code): "race:_M_append";
// - our code reading what a Get or an iterator yields, which points into a memtable another
//   thread filled: "race:RocksDbStore::Get", "race:RocksDbStore::Iterate".
// Only rocksdb_store_test and the crash writer carry these, and they name nothing of Kiln's
// but RocksDbStore's two read paths; RocksDbStore shares no mutable state between threads
// except one atomic counter.
// NOLINTNEXTLINE(bugprone-reserved-identifier): the name TSan looks up.
extern "C" const char* __tsan_default_suppressions() {
  return "race:librocksdb.so\n"
         "race:_M_append\n"
         "race:RocksDbStore::Get\n"
         "race:RocksDbStore::Iterate\n";
}
