#!/usr/bin/env bash
# fleetstream beside Quix Streams on the same GPS pings in the same Kafka-protocol broker.
#
#   bench/peer/run.sh [--quick] [--broker HOST:PORT]
#   bench/peer/run.sh --input-topic TOPIC --count N [--broker HOST:PORT]
#
# The first form runs `fleetstream bench gps-ingest --kafka BROKER --json [--quick]` (the binary is
# ${FLEETSTREAM:-target/release/fleetstream}), which produces the pings into a fresh topic and
# measures fleetstream (at-least-once) and a bare rdkafka consumer over it; then it runs the
# same location index in Quix Streams (bench/peer/quix_gps.py) over that topic and prints the
# figures side by side. The second form skips fleetstream and runs Quix Streams only over an
# existing topic of N pings (e.g. one filled by bench/peer/produce.py).
#
# The broker defaults to $FLEETSTREAM_TEST_KAFKA. fleetstream's output goes to stderr as it
# runs; stdout gets the table, then, as its last line, one JSON object with the figures.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

die() {
  echo "bench/peer/run.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '3,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

quick=0
broker=${FLEETSTREAM_TEST_KAFKA:-}
input_topic=
count=
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1 ;;
    --broker) broker=${2:?--broker needs HOST:PORT}; shift ;;
    --input-topic) input_topic=${2:?--input-topic needs a topic}; shift ;;
    --count) count=${2:?--count needs a number}; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
  shift
done
[[ -n "$broker" ]] || die "no broker: pass --broker HOST:PORT or set FLEETSTREAM_TEST_KAFKA"
if [[ -n "$input_topic" || -n "$count" ]]; then
  [[ -n "$input_topic" && -n "$count" ]] || die "--input-topic and --count go together"
  [[ "$count" =~ ^[1-9][0-9]*$ ]] || die "--count must be a positive number, not $count"
fi

python=$("$here/setup.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# tansu's sqlite engine looks up every fetched record's headers with a scan of its whole header
# table (no index on it in tansu 0.6), so each header row on the broker slows every later fetch;
# Quix's changelog writes two headers per record. Warn when the local test broker lacks the index.
warn_tansu_headers() {
  local db=${FLEETSTREAM_TEST_SERVERS_DIR:-}/tansu/tansu.db
  [[ -n "${FLEETSTREAM_TEST_SERVERS_DIR:-}" && -f "$db" && "$broker" == "${FLEETSTREAM_TEST_KAFKA:-}" ]] || return 0
  python3 - "$db" <<'EOF' >&2 || true
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
indexed = db.execute(
    "select count(*) from sqlite_master where type = 'index' and tbl_name = 'header' and sql is not null"
).fetchone()[0]
if not indexed:
    headers = db.execute("select count(*) from header").fetchone()[0]
    print(
        f"warning: the test broker's header table has no index and {headers} rows: every fetched "
        "record scans it, and this run adds more (Quix's changelog); expect fetches to slow down. "
        "Fix: CREATE INDEX header_topition_offset ON header (topition, offset_id) in "
        f"{sys.argv[1]}"
    )
EOF
}
warn_tansu_headers

fleetstream_json=
if [[ -z "$input_topic" ]]; then
  fleetstream=${FLEETSTREAM:-target/release/fleetstream}
  [[ "$fleetstream" == /* ]] || fleetstream="$root/$fleetstream"
  [[ -x "$fleetstream" ]] || die "$fleetstream not found; build it (cargo build --release -p fleetstream) or set FLEETSTREAM"
  args=(bench gps-ingest --kafka "$broker" --json)
  [[ $quick == 1 ]] && args+=(--quick)
  echo "== ${fleetstream#"$root/"} ${args[*]}" >&2
  (cd "$root" && "$fleetstream" "${args[@]}") | tee "$work/fleetstream.out" >&2 ||
    die "fleetstream bench failed"
  fleetstream_json=$(grep -v '^[[:space:]]*$' "$work/fleetstream.out" | tail -n 1 || true)
  read -r input_topic count < <(
    python3 -c '
import json, sys
report = json.loads(sys.argv[1])
kafka = report.get("kafka_input") or sys.exit("the report has no kafka_input")
print(kafka["topic"], kafka["pings"])
' "$fleetstream_json"
  ) || die "the last line of fleetstream's output is not the JSON report with kafka_input"
fi

echo "== Quix Streams over $input_topic ($count pings)" >&2
"$python" "$here/quix_gps.py" --broker "$broker" --topic "$input_topic" --count "$count" \
  >"$work/quix.out" || die "quix_gps.py failed"
quix_json=$(tail -n 1 "$work/quix.out")

python3 - "$fleetstream_json" "$quix_json" "$broker" <<'EOF'
import json
import sys

fleetstream_raw, quix_raw, broker = sys.argv[1:4]
quix = json.loads(quix_raw)
report = json.loads(fleetstream_raw) if fleetstream_raw else None


def figure(prefix):
    """The gps-ingest figure whose name starts with `prefix`, or None."""
    for f in (report or {}).get("figures", []):
        if f.get("scenario") == "gps-ingest" and f.get("name", "").startswith(prefix):
            return f
    return None


fleetstream = figure("kafka, at-least-once")
bare = figure("bare rdkafka consumer")
fleetstream_rate = fleetstream["value"] if fleetstream else None
if bare:
    bare_rate = bare["value"]
elif fleetstream and "rdkafka" in (fleetstream.get("limit") or {}).get("name", ""):
    bare_rate = fleetstream["limit"]["value"]
else:
    bare_rate = None
quix_rate = quix["records_per_s"]
ratio = fleetstream_rate / quix_rate if fleetstream_rate and quix_rate else None

rows = []
if report is not None:
    rows.append(("fleetstream (Kafka, at-least-once)", fleetstream_rate, "pings/s"))
    rows.append(("bare rdkafka consumer", bare_rate, "pings/s"))
rows.append((f"Quix Streams {quix['version']} (at-least-once)", quix_rate, "pings/s"))
rows.append(
    (
        "Quix Streams, startup included",
        quix["records"] / quix["seconds_including_startup"],
        "pings/s",
    )
)
if report is not None:
    rows.append(("fleetstream / Quix Streams", ratio, "x"))

print()
print(f"gps-ingest on {broker}: {quix['records']} pings from {quix['input_topic']}")
width = max(len(name) for name, _, _ in rows)
for name, value, unit in rows:
    shown = "n/a" if value is None else (f"{value:,.2f}" if unit == "x" else f"{value:,.0f}")
    print(f"  {name:<{width}}  {shown:>12} {unit}")

summary = {
    "scenario": "gps-ingest",
    "broker": broker,
    "topic": quix["input_topic"],
    "pings": quix["records"],
    "fleetstream_kafka_at_least_once_per_s": fleetstream_rate,
    "bare_rdkafka_consumer_per_s": bare_rate,
    "quixstreams_per_s": quix_rate,
    "quixstreams_seconds": quix["seconds"],
    "quixstreams_seconds_including_startup": quix["seconds_including_startup"],
    "quixstreams_version": quix["version"],
    "ratio_fleetstream_to_quixstreams": round(ratio, 3) if ratio is not None else None,
}
if report is not None:
    for key in ("machine", "git_revision"):
        if key in report:
            summary[key] = report[key]
print(json.dumps(summary))
EOF
