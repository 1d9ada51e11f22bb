#!/usr/bin/env bash
# Profiles one benchmark scenario of the release build with perf.
#
#   bench/profile.sh SCENARIO [more `fleetstream bench` arguments, e.g. --quick --threads 1]
#
# Writes to ${PROFILE_DIR:-target/profile/SCENARIO}: perf.data; stacks.folded, one line per
# distinct stack (the input of inferno-flamegraph, flamegraph.pl or speedscope); top.txt, the
# functions with the largest self and inclusive share of the samples; and flamegraph.svg when
# inferno-flamegraph is installed (`cargo install inferno`). The binary is
# ${FLEETSTREAM:-target/release/fleetstream}; perf needs kernel.perf_event_paranoid <= 2.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $# -ge 1 ]] || { sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
scenario=$1
shift
bin=${FLEETSTREAM:-$root/target/release/fleetstream}
[[ -x "$bin" ]] || { echo "bench/profile.sh: no $bin (cargo build --release -p fleetstream)" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/profile.sh: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
out=${PROFILE_DIR:-$root/target/profile/$scenario}
mkdir -p "$out"

# DWARF call graphs: the release build keeps line tables but no frame pointers.
perf record -F 250 --call-graph dwarf,16384 -o "$out/perf.data" -- "$bin" bench "$scenario" "$@"
perf script -i "$out/perf.data" 2>/dev/null | python3 "$root/bench/fold_stacks.py" "$out"
if command -v inferno-flamegraph >/dev/null; then
  inferno-flamegraph <"$out/stacks.folded" >"$out/flamegraph.svg"
fi
echo "profile of $scenario in $out:" >&2
head -n 25 "$out/top.txt" >&2
