#!/usr/bin/env bash
# Installs the Quix Streams peer benchmark's Python environment (idempotent).
#
#   bench/peer/setup.sh
#
# Creates the virtual environment ${FLEETSTREAM_QUIX_VENV:-~/.cache/fleetstream/quix-venv} if it
# is missing and installs bench/peer/requirements.txt into it. A second run with unchanged
# requirements only checks that the packages import. Prints the venv's python path on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${FLEETSTREAM_QUIX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetstream/quix-venv}
requirements="$here/requirements.txt"
stamp="$venv/.fleetstream-requirements.sha256"

die() {
  echo "bench/peer/setup.sh: $*" >&2
  exit 1
}

python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "$python not found; install Python 3.9 or newer"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  die "$("$python" --version 2>&1) is too old; Quix Streams needs Python 3.9 or newer"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv" >&2
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" ||
    die "could not create a virtual environment at $venv (on Debian: apt-get install python3-venv)"
fi

want=$(sha256sum "$requirements" | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [[ "$want" != "$have" ]]; then
  echo "installing bench/peer/requirements.txt into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
    die "pip install -r $requirements failed (is PyPI reachable?)"
  echo "$want" >"$stamp"
fi

"$venv/bin/python" -c 'import quixstreams, h3, confluent_kafka' 2>/dev/null ||
  die "the packages do not import in $venv; remove it and run again"
echo "$venv/bin/python"
