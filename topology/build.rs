//! Links what Debian's static RocksDB (`librocksdb.a`, chosen by `ROCKSDB_STATIC` in
//! `.cargo/config.toml`) needs beside it: its compression libraries and the C++ runtime. The
//! shared library names them itself; the archive cannot.
//!
//! Linked statically, RocksDB reaches its thread-local performance counters directly rather
//! than through `__tls_get_addr`, which its memtable comparator does on every comparison.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["snappy", "lz4", "z", "bz2", "gflags", "stdc++"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
        // By its file name: `-lzstd` would find the zstd-sys crate's own archive first, which
        // lacks the dictionary builder RocksDB calls.
        println!("cargo:rustc-link-lib=dylib:+verbatim=libzstd.so.1");
    }
}
