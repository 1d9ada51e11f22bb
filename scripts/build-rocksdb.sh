#!/usr/bin/env bash
# Builds RocksDB's static library from the C++ sources the librocksdb-sys crate ships: the version
# our Rust bindings are written against, as pinned in Cargo.lock (the crate archive is checked
# against the lock file's checksum). Builds into CACHE/rocksdb-<crate version>-<this recipe's
# hash> (lib/librocksdb.a, include/) unless that is already there, and prints that folder.
#
#   scripts/build-rocksdb.sh CACHE
#
# Why not Debian's librocksdb-dev: that build keeps its assertions (no NDEBUG: 283 of its objects
# call __assert_fail, and its test sync points run in every write) and computes CRC32C without
# SSE4.2. This one is built with -O2 and NDEBUG, with SSE4.2/PCLMUL (and AVX2/BMI/LZCNT) where
# this machine's CPU has them, and with LZ4 and Zstandard, the compressions the stores use.
# About 8 minutes on two cores; scripts/setup.sh runs it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $# -eq 1 ]] || { sed -n '7p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }
cache=$1
log() { printf '==> %s\n' "$*" >&2; }

crate=librocksdb-sys
# The locked version and checksum: the three lines after the crate's name in Cargo.lock.
read -r version checksum < <(awk -v name="$crate" '
  $0 == "name = \"" name "\"" { found = 1; next }
  found && /^version = / { gsub(/"/, "", $3); v = $3 }
  found && /^checksum = / { gsub(/"/, "", $3); print v, $3; exit }
' "$root/Cargo.lock") || true
[[ -n ${version:-} && -n ${checksum:-} ]] || { echo "build-rocksdb.sh: $crate is not in Cargo.lock" >&2; exit 1; }
# The recipe's hash in the name: a changed recipe builds afresh.
dest="$cache/rocksdb-$version-$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-8)"
if [[ -f $dest/lib/librocksdb.a ]]; then
  echo "$dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
archive="$work/$crate-$version.crate"
cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$version.crate" 2>/dev/null | head -n 1 || true)
if [[ -n $cached ]]; then
  cp "$cached" "$archive"
else
  log "downloading $crate $version from crates.io"
  curl -fsSL --retry 3 -o "$archive" "https://static.crates.io/crates/$crate/$crate-${version//+/%2B}.crate"
fi
echo "$checksum  $archive" | sha256sum -c --quiet -
tar -xzf "$archive" -C "$work"
src="$work/$crate-$version/rocksdb"

# Instruction-set extensions RocksDB uses (CRC32C, hashing, bit tricks), when this CPU has all.
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
sse=""
for f in sse4_2 pclmulqdq avx2 bmi1 abm; do
  [[ " $flags " == *" $f "* ]] || { sse=""; break; }
  sse=1
done
log "building RocksDB ${version#*+} into $dest (USE_SSE=${sse:-0}; about 8 minutes on two cores)"
(
  cd "$src"
  # Read by RocksDB's platform detection from the environment: optional libraries off (their
  # symbols would have to be linked too), the compressions the stores use on.
  export PORTABLE=1 USE_SSE=$sse DEBUG_LEVEL=0 DISABLE_WARNING_AS_ERROR=1 \
    ROCKSDB_DISABLE_GFLAGS=1 ROCKSDB_DISABLE_SNAPPY=1 ROCKSDB_DISABLE_ZLIB=1 ROCKSDB_DISABLE_BZIP=1 \
    ROCKSDB_DISABLE_NUMA=1 ROCKSDB_DISABLE_TBB=1 ROCKSDB_DISABLE_JEMALLOC=1 ROCKSDB_DISABLE_MEMKIND=1 \
    ROCKSDB_USE_IO_URING=0
  [[ -n $sse ]] || unset USE_SSE
  # -g0: no debug information (a quarter of the compile time, 97 % of the archive).
  make static_lib -j"$(nproc)" EXTRA_CXXFLAGS="-fPIC -g0" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    exit 1
  }
)
rm -rf "$dest.partial"
mkdir -p "$dest.partial/lib"
cp "$src/librocksdb.a" "$dest.partial/lib/"
cp -r "$src/include" "$dest.partial/include"
rm -rf "$dest"
mv "$dest.partial" "$dest"
log "RocksDB ${version#*+} in $dest"
echo "$dest"
