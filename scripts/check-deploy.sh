#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a cluster (docs/deploy.md):
#   - hadolint on every Dockerfile;
#   - `docker compose config` (or Debian's docker-compose) parses docker/compose.yaml;
#   - kustomize renders docker/k8s/{base,overlays/gpu,train,train/subsample,train/subsample/bundle,audit,audit/merge};
#     the output is validated against
#     the Kubernetes $K8S_VERSION schemas (kubernetes-validate --strict) and the ServiceMonitor
#     against the Prometheus Operator's (npm);
#   - scripts/check_deploy.py: ports, probes, drain timing, selectors agree across files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deploy
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
venv=$(cat "$home/deploy/VENV")
npm_dir=$(cat "$home/deploy/NPM_DIR")
K8S_VERSION=${K8S_VERSION:-1.33.0}
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

echo "== hadolint"
"$venv/bin/hadolint" docker/Dockerfile docker/Dockerfile.cuda docker/Dockerfile.train

echo "== compose"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" -f docker/compose.yaml config -q
"${compose[@]}" -f docker/compose.yaml --profile cuda config -q
echo "ok   ${compose[*]} config (default and cuda profiles)"

echo "== kustomize + schemas (Kubernetes $K8S_VERSION)"
if ! kubectl version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[4-9]'; then
  echo "check-deploy: needs kubectl with kustomize v4 or later on PATH" >&2
  exit 1
fi
for k in base overlays/gpu train train/subsample train/subsample/bundle audit audit/merge; do
  f="$out/${k//\//-}.yaml"
  kubectl kustomize "docker/k8s/$k" > "$f"
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$f"
  NPM_DIR="$npm_dir" node scripts/validate-servicemonitor.mjs "$f"
  echo "ok   docker/k8s/$k"
done

echo "== build context"
# The build stage sees only what it COPYs (and .dockerignore lets through): compile exactly
# that, so a new include_bytes! or module outside those paths fails here, not in docker build.
ctx="$out/context"; mkdir -p "$ctx"
awk '/^FROM .* AS build/{b=1; next} /^FROM /{b=0} b && /^COPY / && !/--from/' docker/Dockerfile |
  while read -r _ args; do
    read -r -a parts <<< "$args"
    n=${#parts[@]}
    for ((i = 0; i < n - 1; i++)); do cp -r "${parts[i]}" "$ctx/"; done
  done
(cd "$ctx" && CARGO_TARGET_DIR="$home/deploy/context-target" cargo check --quiet --locked --bin sslmem)
echo "ok   docker/Dockerfile's build stage compiles from its COPY list"

echo "== consistency"
"$venv/bin/python" scripts/check_deploy.py "$out/base.yaml" "$out/overlays-gpu.yaml" "$out/train.yaml" \
  "$out/audit.yaml" "$out/audit-merge.yaml" "$out/train-subsample.yaml" "$out/train-subsample-bundle.yaml"
echo "check-deploy: all passed"
