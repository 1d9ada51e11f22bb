#!/usr/bin/env bash
# The test suite: formatting, lints, every crate's tests (against real PostgreSQL, ClickHouse
# and Kafka-protocol servers started on loopback for the run), and the Kubernetes manifests.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
log() { printf '==> %s\n' "$*" >&2; }

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "starting PostgreSQL, ClickHouse and tansu on loopback"
servers_dir=${FLEETSTREAM_TEST_SERVERS_DIR:-/tmp/fleetstream-servers-$(id -u)}
trap 'scripts/servers.sh stop "$servers_dir" || true' EXIT
eval "$(scripts/servers.sh start "$servers_dir")"
log "cargo test"
cargo test --workspace
log "benchmarks, smoke run (debug build: the figures only show that every scenario runs)"
cargo run -q -p fleetstream -- bench all --quick --json
log "kubernetes manifests"
bash scripts/check-k8s.sh
log "all checks passed"
