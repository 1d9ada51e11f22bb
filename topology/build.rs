//! Links what the static RocksDB library (`librocksdb.a`, built by `scripts/build-rocksdb.sh`
//! and chosen by `ROCKSDB_STATIC` in `.cargo/config.toml`) needs beside it: the compressions
//! it was built with and the C++ runtime. An archive cannot name its own dependencies.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    // The library is reached through a link that a rebuild re-points: link again when it
    // changes (cargo follows the link to the archive's modification time).
    if let Some(dir) = std::env::var_os("ROCKSDB_LIB_DIR") {
        let archive = std::path::Path::new(&dir).join("librocksdb.a");
        println!("cargo:rerun-if-changed={}", archive.display());
    }
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["lz4", "stdc++"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
        // By its file name: `-lzstd` would find the zstd-sys crate's own archive first, which
        // lacks the dictionary builder RocksDB calls.
        println!("cargo:rustc-link-lib=dylib:+verbatim=libzstd.so.1");
    }
}
