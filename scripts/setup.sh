#!/usr/bin/env bash
# Installs everything fleetstream needs on a fresh Debian 12 machine (root or sudo):
# system libraries (compression, clang for bindgen, build tools), RocksDB built from source
# once, the servers the tests run against (PostgreSQL, ClickHouse, the Kafka-protocol broker
# tansu), Chromium for the dashboard test, and the Node.js packages of the dashboard.
# Idempotent: what is already installed (or cached under ~/.cache/fleetstream) is kept.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FLEETSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetstream}
log() { printf '==> %s\n' "$*" >&2; }

if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi

packages=(
  # build: compilers and bindgen's libclang; the compressions RocksDB links (LZ4, Zstandard)
  build-essential pkg-config cmake clang libclang-dev
  liblz4-dev libzstd-dev zlib1g-dev libssl-dev libsasl2-dev
  # servers the integration tests start on loopback
  postgresql clickhouse-server clickhouse-client
  # tools of the test scripts; Chromium for the dashboard test
  python3 python3-venv curl jq procps chromium
)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# RocksDB's static library, built once from the sources of the locked librocksdb-sys crate
# (Debian's build keeps its assertions on: see scripts/build-rocksdb.sh) and cached.
# `.cargo/config.toml` links it through the `.rocksdb` link in the checkout.
rocksdb=$("$root/scripts/build-rocksdb.sh" "$cache")
ln -sfn "$rocksdb" "$root/.rocksdb"

# The Kafka-protocol broker for the Kafka tests (see SERVERS notes in the README).
tansu="$cache/tansu/bin/tansu"
if ! [[ -x $tansu ]]; then
  log "building tansu 0.6.0 (about 15 minutes on two cores; cached in $cache/tansu)"
  CARGO_TARGET_DIR="$cache/tansu-target" cargo install tansu --version 0.6.0 --locked \
    --no-default-features --features libsql,dynostore --root "$cache/tansu"
  rm -rf "$cache/tansu-target"
fi

# The dashboard's headless-browser test (playwright-core drives Debian's chromium).
if ! [[ -d $root/api/tests/e2e/node_modules/playwright-core ]]; then
  log "installing playwright-core for the dashboard test"
  (cd "$root/api/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The schema-driven API fuzz run (schemathesis against /openapi.json); hypothesis is pinned to
# a release schemathesis 3.39 works with.
venv="$cache/venv"
stamp="$venv/.installed-schemathesis-3.39.16"
if ! [[ -f $stamp ]]; then
  log "installing schemathesis into $venv"
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==3.39.16" "hypothesis==6.122.3"
  touch "$stamp"
fi

log "ready: cargo build / cargo test will find everything they need"
