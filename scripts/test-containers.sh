#!/usr/bin/env bash
# The container images built and run as a user would (docs/deploy.md#the-container-checks).
# Builds docker/Dockerfile and docker/Dockerfile.train with podman, on local base images when no
# registry is reachable (scripts/setup.sh --containers), then checks the CPU image: non-root on
# a read-only root and ready; scores equal to `sslmem score` on the host; its HEALTHCHECK;
# /metrics through promtool; a real Prometheus with docker/prometheus scraping it; drain on
# SIGTERM; a burst under a memory limit; a mounted bundle of one's own; `podman kube play` of the
# Kubernetes base; the audit Jobs as Kubernetes runs them; and one tiny training epoch in the
# trainer image. Prints each check with its time; exits non-zero if any fails.
#
#   scripts/test-containers.sh
#
# Containers, pods and secrets it starts carry the label sslmem-test=<pid> and are removed on
# exit. Network traffic stays on 127.0.0.1 (host network, free ports) or inside pods without a
# network. Image layers and cargo's caches stay in podman's store: reruns on one machine are
# incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
begin=$SECONDS

echo "== set-up (scripts/setup.sh --containers --deploy --datasets --train)"
setup_log=$(mktemp)
if ! scripts/setup.sh --containers --deploy --datasets --train >"$setup_log" 2>&1; then
  cat "$setup_log" >&2
  echo "test-containers: set-up failed" >&2
  exit 1
fi
rm -f "$setup_log"
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
venv=$(cat "$home/deploy/VENV")
py="$venv/bin/python"
export CONTAINERS_CONF="$home/containers/containers.conf"
mapfile -t build_args < "$home/containers/build-args"
pm() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }
torch_site=$(dirname "$(cat "$home/torch/LIBTORCH")")

# The host's sslmem (debug; the test suite has built it): the reference for the scores.
cargo build --quiet --locked --bin sslmem
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
host_sslmem="$target_dir/debug/sslmem"

tag=$$
label="sslmem-test=$tag"
img=localhost/sslmem-test/sslmem:cpu
train_img=localhost/sslmem-test/sslmem-train:latest
prom_img=localhost/sslmem-test/prometheus:bookworm
# The name docker/k8s/base gives the image (imagePullPolicy IfNotPresent: the local tag is used).
k8s_img=$(kubectl kustomize docker/k8s/base | awk '/image: /{print $2; exit}')
work=$(mktemp -d)
cleanup() {
  local rc=$? ids
  # Every step, whatever the others did (a failure here must not skip the rest).
  set +e
  # Pods first: their infra containers carry the label too and go only with their pod.
  ids=$(pm pod ps -q --filter "label=$label" 2>/dev/null)
  [[ -n $ids ]] && pm pod rm -f $ids >/dev/null 2>&1
  ids=$(pm ps -aq --filter "label=$label" 2>/dev/null)
  [[ -n $ids ]] && pm rm -f -t 0 $ids >/dev/null 2>&1
  [[ -f $work/kube.yaml ]] && pm kube down "$work/kube.yaml" >/dev/null 2>&1
  pm secret rm "sslmem-api-key" >/dev/null 2>&1
  # The audit volume holds files of user 10001 made inside containers.
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits for GET URL to answer 200 (at most $2 seconds).
wait_200() {
  local url=$1 limit=${2:-60} t=$SECONDS
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]]; do
    ((SECONDS - t < limit)) || { echo "no 200 from $url within ${limit}s"; return 1; }
    sleep 0.5
  done
}
# Starts the CPU image on the host network, on 127.0.0.1:PORT, as `docker run --read-only`
# does (no writable tmpfs either: the image needs no writable path).
run_service() { # name port [podman run flags...] -- [serve args...]
  local name=$1 port=$2; shift 2
  local flags=()
  while (($#)) && [[ $1 != -- ]]; do flags+=("$1"); shift; done
  (($#)) && shift
  pm run -d --name "$name" --label "$label" --network host --read-only --read-only-tmpfs=false \
    -e SSLMEM_HOST=127.0.0.1 -e SSLMEM_PORT="$port" "${flags[@]}" "$img" "$@" >/dev/null
}
# Posts every PNG of DIR to /v1/score (multipart, in file order).
score_over_http() { # port dir query out
  local files=() f
  for f in "$2"/*.png; do files+=(-F "image=@$f"); done
  curl -sf "${files[@]}" "http://127.0.0.1:$1/v1/score?$3" -o "$4"
}

npass=0 nfail=0 nskip=0 n=0
check() { # name function [args...]
  local name=$1 t=$SECONDS rc
  shift
  n=$((n + 1))
  local log="$work/check-$n.log"
  set +e
  (set -e; "$@") >"$log" 2>&1
  rc=$?
  set -e
  if ((rc == 0)); then
    npass=$((npass + 1))
    printf 'ok   %-68s %5ds\n' "$name" $((SECONDS - t))
    grep '^  ' "$log" || true
  else
    nfail=$((nfail + 1))
    printf 'FAIL %-68s %5ds\n' "$name" $((SECONDS - t))
    tail -n 40 "$log" | sed 's/^/     | /'
  fi
}
skip() { nskip=$((nskip + 1)); printf 'skip %s\n' "$1"; }

rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

# --- Images ----------------------------------------------------------------------------
# --format docker: podman's default OCI format has no HEALTHCHECK and drops it silently.
build_cpu() {
  pm build --format docker --network host "${build_args[@]}" --build-arg "SSLMEM_GIT_REVISION=$rev" \
    -f docker/Dockerfile -t "$img" .
  echo "  $img: $(pm image inspect --format '{{.Size}}' "$img" | awk '{printf "%.0f MB", $1 / 1e6}')"
}
build_prometheus() {
  # Debian's prometheus (and promtool), on the same local Debian base; curl for the query API
  # from inside its pod.
  local base
  base=$(sed -n 's/^--build-arg=RUNTIME_IMAGE=//p' "$home/containers/build-args")
  pm build --network host -t "$prom_img" -f - "$work" <<EOF
FROM $base
RUN apt-get update && apt-get install -y --no-install-recommends prometheus curl \\
    && rm -rf /var/lib/apt/lists/*
USER prometheus
WORKDIR /var/lib/prometheus
ENTRYPOINT ["prometheus"]
EOF
  echo "  $(pm run --rm --network none --entrypoint prometheus "$prom_img" --version 2>&1 | sed -n 1p)"
}

# --- The CPU image ---------------------------------------------------------------------
svc=sslmem-test-$tag-svc
svc_port=$(free_port)
start_nonroot_readonly() {
  run_service "$svc" "$svc_port"
  wait_200 "http://127.0.0.1:$svc_port/readyz" 60
  [[ $(pm inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$svc") == true ]]
  local uid
  uid=$(pm exec "$svc" id -u)
  [[ $uid == 10001 ]] || { echo "runs as uid $uid, not 10001"; return 1; }
  # PID 1 is sslmem itself (no shell in between), as that user.
  [[ $(pm exec "$svc" cat /proc/1/comm) == sslmem ]]
  if pm exec "$svc" sh -c 'echo x > /opt/sslmem/x' 2>/dev/null || pm exec "$svc" sh -c 'echo x > /tmp/x' 2>/dev/null; then
    echo "the root filesystem is writable"; return 1
  fi
  echo "  uid 10001, read-only root (no tmpfs), /readyz 200 on 127.0.0.1:$svc_port"
}
same_scores_as_host() {
  "$py" scripts/test_containers.py pngs "$work/pngs"
  "$host_sslmem" score --bundle models/fashion-mnist-canaries --pairs 12 --seed 7 "$work/pngs"/*.png > "$work/cli.jsonl"
  score_over_http "$svc_port" "$work/pngs" "pairs=12&seed=7" "$work/service.json"
  "$py" scripts/test_containers.py same-scores "$work/cli.jsonl" "$work/service.json" | sed 's/^/  /'
}
healthcheck_passes() {
  pm inspect --format '{{json .Config.Healthcheck}}' "$svc"
  pm healthcheck run "$svc"
  echo "  podman healthcheck run: healthy ($(pm inspect --format '{{join .Config.Healthcheck.Test " "}}' "$svc"))"
}
metrics_pass_promtool() {
  curl -sf "http://127.0.0.1:$svc_port/metrics" > "$work/metrics.txt"
  pm run --rm -i --network none --entrypoint promtool "$prom_img" check metrics < "$work/metrics.txt"
  echo "  $(grep -c '^sslmem_' "$work/metrics.txt") sslmem_ samples; promtool check metrics: no problems"
}
prometheus_scrapes() {
  # One pod without a network (loopback only): the service on its image's 0.0.0.0:8080 and
  # Prometheus with the shipped docker/prometheus files, `sslmem` resolving to 127.0.0.1 as
  # compose's network resolves the service name. Nothing else is changed.
  local pod=sslmem-test-$tag-prom
  pm run --rm --network none -v "$root/docker/prometheus:/etc/prometheus:ro" --entrypoint promtool \
    "$prom_img" check config /etc/prometheus/prometheus.yml
  pm run --rm --network none -v "$root/docker/prometheus:/etc/prometheus:ro" --entrypoint promtool \
    "$prom_img" check rules /etc/prometheus/rules.yml
  printf '127.0.0.1 localhost sslmem\n' > "$work/hosts"
  pm pod create --name "$pod" --label "$label" --network none >/dev/null
  pm run -d --pod "$pod" --label "$label" --name "$pod-sslmem" --read-only --read-only-tmpfs=false \
    -v "$work/hosts:/etc/hosts:ro" "$img" >/dev/null
  pm run -d --pod "$pod" --label "$label" --name "$pod-prometheus" \
    -v "$root/docker/prometheus:/etc/prometheus:ro" -v "$work/hosts:/etc/hosts:ro" "$prom_img" \
    --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/tmp/prometheus \
    --web.listen-address=127.0.0.1:9090 >/dev/null
  local q='http://127.0.0.1:9090/api/v1/query?query=' t=$SECONDS up series
  until up=$(pm exec "$pod-prometheus" curl -sf "${q}up%7Bjob%3D%22sslmem%22%2Cvariant%3D%22cpu%22%7D") &&
    [[ $(jq -r '.data.result[0].value[1] // empty' <<<"$up") == 1 ]]; do
    ((SECONDS - t < 90)) || { echo "target not up within 90 s: $up"; pm logs "$pod-prometheus" | tail -20; return 1; }
    sleep 2
  done
  series=$(pm exec "$pod-prometheus" curl -sf "${q}count%28%7B__name__%3D~%22sslmem_.%2B%22%7D%29" |
    jq -r '.data.result[0].value[1]')
  ((series > 0))
  local rules
  rules=$(pm exec "$pod-prometheus" curl -sf 'http://127.0.0.1:9090/api/v1/rules' |
    jq -r '[.data.groups[].rules[].name] | join(",")')
  [[ -n $rules ]]
  echo "  promtool check config and rules: SUCCESS; target sslmem:8080 (variant cpu) up"
  echo "  $series sslmem_ series in the query API; rules loaded: $rules"
  pm pod rm -f "$pod" >/dev/null
}
drains_on_sigterm() {
  # Four slow requests in flight, then `podman stop` (SIGTERM, the image's STOPSIGNAL): each
  # completes with its scores and the container exits 0 within SSLMEM_DRAIN_TIMEOUT.
  local i pids=() t drain
  drain=$(pm inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$svc" | sed -n 's/^SSLMEM_DRAIN_TIMEOUT=//p')
  for i in 1 2 3 4; do
    score_over_http "$svc_port" "$work/pngs" "pairs=100&seed=$i" "$work/drain-$i.json" &
    pids+=($!)
  done
  t=$SECONDS
  until curl -s "http://127.0.0.1:$svc_port/metrics" | grep -Eq '^sslmem_http_requests_in_flight(\{[^}]*\})? [4-9]'; do
    ((SECONDS - t < 20)) || { echo "the requests never were in flight together"; return 1; }
    sleep 0.1
  done
  t=$SECONDS
  pm stop -t 60 "$svc" >/dev/null
  local took=$((SECONDS - t))
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "request $((i + 1)) failed during the drain"; return 1; }
    [[ $(jq '.results | length' "$work/drain-$((i + 1)).json") == 5 ]]
  done
  local code
  code=$(pm inspect --format '{{.State.ExitCode}}' "$svc")
  [[ $code == 0 ]] || { echo "exit code $code"; pm logs "$svc" | tail -5; return 1; }
  ((took <= ${drain%.*})) || { echo "took ${took}s, longer than the drain timeout ${drain}s"; return 1; }
  echo "  4 in-flight requests (5 images x 100 pairs each) completed with 200; exit 0 after ${took}s (drain timeout ${drain}s)"
}
burst_under_memory_limit() {
  # The service's limits are what keep it inside a container's memory: a burst of requests
  # larger than it accepts, and more of them than it serves at once, under --memory.
  local name=sslmem-test-$tag-mem port mem=768m conc=8 i pids=()
  port=$(free_port)
  run_service "$name" "$port" --memory "$mem" --memory-swap "$mem" \
    -e SSLMEM_MAX_CONCURRENT="$conc"
  wait_200 "http://127.0.0.1:$port/readyz" 60
  # A 40 MB body (over the 32 MiB default) and a large but accepted image: 2000x2000 RGB.
  head -c 40000000 /dev/zero > "$work/big.bin"
  "$py" - "$work/large.png" <<'PY'
import struct, sys, zlib
w = h = 2000
raw = b"".join(b"\0" + bytes((x * 7 + y) % 256 for x in range(w * 3)) for y in range(h))
def chunk(k, d):
    return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
  for i in $(seq 1 48); do
    if ((i % 2)); then
      curl -s -o /dev/null -w '%{http_code}\n' -F "image=@$work/big.bin" \
        "http://127.0.0.1:$port/v1/score" > "$work/burst-$i" &
    else
      curl -s -o /dev/null -w '%{http_code}\n' -F "image=@$work/large.png" -F "image=@$work/large.png" \
        "http://127.0.0.1:$port/v1/score?pairs=50" > "$work/burst-$i" &
    fi
    pids+=($!)
  done
  wait "${pids[@]}" || true
  local codes oom state
  codes=$(cat "$work"/burst-* | sort | uniq -c | awk '{printf "%s x %s, ", $1, $2}')
  state=$(pm inspect --format '{{.State.Status}} oom={{.State.OOMKilled}} exit={{.State.ExitCode}}' "$name")
  echo "  --memory $mem, SSLMEM_MAX_CONCURRENT=$conc, 48 requests at once: ${codes% , }"
  echo "  container after the burst: $state"
  [[ $state == "running oom=false exit=0" ]]
  grep -qx 413 "$work"/burst-* || { echo "no 413 for the oversized bodies"; return 1; }
  grep -qx 429 "$work"/burst-* || { echo "no 429 beyond SSLMEM_MAX_CONCURRENT"; return 1; }
  if grep -Evqx '200|413|429' "$work"/burst-*; then echo "answers other than 200/413/429"; return 1; fi
  wait_200 "http://127.0.0.1:$port/readyz" 10
  pm rm -f -t 0 "$name" >/dev/null
}
mounted_bundle() {
  # A bundle that is not the image's, mounted read-only, SSLMEM_BUNDLE pointing at it.
  local name=sslmem-test-$tag-own port
  port=$(free_port)
  "$host_sslmem" bundle random --out "$work/own-bundle" --models 2 --seed 5 >/dev/null
  run_service "$name" "$port" -v "$work/own-bundle:/bundles/own:ro" -e SSLMEM_BUNDLE=/bundles/own
  wait_200 "http://127.0.0.1:$port/readyz" 60
  curl -sf "http://127.0.0.1:$port/v1/bundle" > "$work/own-info.json"
  local sha
  sha=$(sha256sum "$work/own-bundle/sslmem.json" | cut -d' ' -f1)
  [[ $(jq -r .bundle "$work/own-info.json") == own && $(jq -r .sha256 "$work/own-info.json") == "$sha" ]] ||
    { cat "$work/own-info.json"; return 1; }
  if grep -q "/bundles/own\|$work" "$work/own-info.json"; then
    echo "/v1/bundle shows a path"; return 1
  fi
  "$host_sslmem" score --bundle "$work/own-bundle" --pairs 6 --seed 3 "$work/pngs"/*.png > "$work/own-cli.jsonl"
  score_over_http "$port" "$work/pngs" "pairs=6&seed=3" "$work/own-service.json"
  "$py" scripts/test_containers.py same-scores "$work/own-cli.jsonl" "$work/own-service.json" | sed -n '1s/^/  /p'
  echo "  /v1/bundle: bundle \"own\", sha256 ${sha:0:16}... (= sha256sum of its sslmem.json), no path"
  pm rm -f -t 0 "$name" >/dev/null
}
kube_play_base() {
  # The rendered base as written, in a pod without a network: the kubelet's probes (httpGet
  # on the named port) are run the same way from inside the pod with `sslmem health`.
  kubectl kustomize docker/k8s/base > "$work/base.yaml"
  pm tag "$img" "$k8s_img"
  # The Secret the Deployment reads (podman's secretKeyRef takes the data map as JSON).
  pm secret rm sslmem-api-key >/dev/null 2>&1 || true
  printf '{"api-key": "%s"}' "$(printf 'test-%s' "$tag" | base64)" | pm secret create sslmem-api-key - >/dev/null
  # Only the Deployment (podman has no Service, HPA, PDB or ServiceMonitor), and two changes
  # for podman 4.3: it restarts a finished init container under restartPolicy Always (a
  # Deployment's) and never starts the main one, where the kubelet runs init containers once;
  # and it publishes containerPorts on the host, which a pod without a network cannot (the
  # probes below still resolve the named port from the manifest as written).
  "$py" -c 'import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"]
for d in docs:
    pod = d["spec"]["template"]["spec"]
    pod["restartPolicy"] = "OnFailure"
    for c in pod["containers"]:
        c.pop("ports", None)
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))' "$work/base.yaml" "$work/kube.yaml"
  pm kube play --network none "$work/kube.yaml"
  local pod ctr
  pod=$(pm pod ps --format '{{.Name}}' | grep '^sslmem-pod' | sed -n 1p)
  pm pod ps --filter "name=$pod"
  ctr=$(pm ps --filter "pod=$pod" --format '{{.Names}}' | grep -- '-sslmem$')
  local init_state
  init_state=$(pm ps -a --filter "pod=$pod" --format '{{.Names}} {{.Status}}' | grep -- '-bundle ' || true)
  echo "init container: $init_state"
  [[ $(pm inspect --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' "$ctr") == "10001:10001 true" ]] ||
    { pm inspect --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' "$ctr"; return 1; }
  local probes kind path port period timeout threshold ok t
  probes=$("$py" scripts/test_containers.py probes "$work/base.yaml" sslmem sslmem)
  while read -r kind path port period timeout threshold; do
    ok=0
    for ((i = 0; i < threshold; i++)); do
      if pm exec "$ctr" sslmem health --host 127.0.0.1 --port "$port" --path "$path" --timeout "$timeout" >/dev/null 2>&1; then
        ok=1; break
      fi
      sleep "$period"
    done
    ((ok)) || { echo "$kind $path:$port failed $threshold times"; pm logs "$ctr" | tail -20; return 1; }
    echo "  $kind GET $path on port $port: 200 (period ${period}s, timeout ${timeout}s, after $i failures)"
  done < <(jq -r '.[] | "\(.kind) \(.path) \(.port) \(.period) \(.timeout) \(.failure_threshold)"' <<<"$probes")
  pm exec "$ctr" sh -c 'echo "  serving SSLMEM_BUNDLE=$SSLMEM_BUNDLE, filled by the init step: $(ls /bundle | tr "\n" " ")"'
  pm kube down "$work/kube.yaml" >/dev/null
  pm secret rm sslmem-api-key >/dev/null
}
audit_jobs() {
  # As Kubernetes runs docker/k8s/audit: the shard Job's container N times (N = completions)
  # with the completion index, onto one shared folder, then the merge Job's container; the
  # merged files must equal an unsharded audit's byte for byte.
  kubectl kustomize docker/k8s/audit > "$work/audit.yaml"
  kubectl kustomize docker/k8s/audit/merge > "$work/audit-merge.yaml"
  local vol="$work/audit-volume" n i
  mkdir -p "$vol/datasets/fashion-mnist"
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$vol/datasets/fashion-mnist/"
  chown -R 10001:10001 "$vol" # what the pod's fsGroup does for the claim
  n=$("$py" -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Job")["spec"]["completions"])' "$work/audit.yaml")
  local common=(--volume "audit=$vol" --set SOURCE_DATE_EPOCH=1767225600)
  for ((i = 0; i < n; i++)); do
    "$py" scripts/test_containers.py job-argv "$work/audit.yaml" sslmem-audit-shards --index "$i" \
      "${common[@]}" --arg --limit --arg 20 "$img" > "$work/argv"
    mapfile -d '' -t argv < "$work/argv"
    pm run --label "$label" "${argv[@]}"
  done
  "$py" scripts/test_containers.py job-argv "$work/audit-merge.yaml" sslmem-audit-merge \
    "${common[@]}" "$img" > "$work/argv"
  mapfile -d '' -t argv < "$work/argv"
  pm run --label "$label" "${argv[@]}"
  # The same audit unsharded: the shard Job's container without its shard.
  "$py" scripts/test_containers.py job-argv "$work/audit.yaml" sslmem-audit-shards --index 0 \
    "${common[@]}" --unset SSLMEM_AUDIT_SHARD --set SSLMEM_AUDIT_OUT=/audit/unsharded \
    --arg --limit --arg 20 "$img" > "$work/argv"
  mapfile -d '' -t argv < "$work/argv"
  pm run --label "$label" "${argv[@]}"
  local files f count=0
  files=$(cd "$vol/report" && find . -type f | sort)
  for f in $files; do
    cmp "$vol/report/$f" "$vol/unsharded/$f" || return 1
    count=$((count + 1))
  done
  ((count >= 8)) || { echo "only $count files in the merged report"; return 1; }
  echo "  $n shards (JOB_COMPLETION_INDEX 0..$((n - 1))) + merge: $count files equal the unsharded audit's byte for byte"
  echo "  $(echo $files | tr '\n' ' ')"
}

# --- The trainer image -------------------------------------------------------------------
build_train() {
  # The torch stage copies this machine's torch==2.13.0 (scripts/setup.sh --train) instead of
  # downloading it again; Docker users get it from PyPI (TORCH_FROM empty). --layers=false:
  # podman 4.3 cannot bind-mount a stage that came from its layer cache (`couldn't find
  # .../merged/opt/torch`), so the stages are made anew each time (the cargo cache mount still
  # keeps the build incremental).
  pm build --layers=false --format docker --network host "${build_args[@]}" --build-arg "SSLMEM_GIT_REVISION=$rev" \
    -v "$torch_site:/run/torch-site:ro" --build-arg TORCH_FROM=/run/torch-site \
    -f docker/Dockerfile.train -t "$train_img" .
  echo "  $train_img: $(pm image inspect --format '{{.Size}}' "$train_img" | awk '{printf "%.1f GB", $1 / 1e9}'); $(df -h --output=avail "$graph_root" | tail -n 1 | tr -d ' ') left free"
}
train_one_epoch() {
  # The image's own command (`sslmem-train pair --resume`, SSLMEM_TRAIN_OUT under /bundles),
  # a few hundred images and one epoch; run again, it finds the bundle complete and exits 0.
  mkdir -p "$work/bundles" && chown 10001:10001 "$work/bundles"
  local small=(--subset 200 --test-subset 100 --epochs 1 --batch-size 32)
  pm run --rm --label "$label" --network none -v "$work/bundles:/bundles" -e SSLMEM_TRAIN_EPOCHS=1 \
    "$train_img" pair --resume "${small[@]}"
  local out="$work/bundles/fashion-mnist-simclr"
  [[ $(jq -r .training.dataset "$out/sslmem.json") == fashion-mnist ]]
  local before
  before=$(sha256sum "$out/f0.onnx")
  pm run --rm --label "$label" --network none -v "$work/bundles:/bundles" -e SSLMEM_TRAIN_EPOCHS=1 \
    "$train_img" pair --resume "${small[@]}"
  [[ $(sha256sum "$out/f0.onnx") == "$before" ]]
  echo "  trained /bundles/fashion-mnist-simclr (device $(jq -r '.training.device // "?"' "$out/sslmem.json")): $(ls "$out" | tr '\n' ' ')"
  echo "  run again: exit 0, f0.onnx unchanged (resumed a complete bundle)"
}

echo "== container checks (podman $(pm version --format '{{.Client.Version}}'), runtime runc)"
# Dangling images of an earlier run that stopped before its own prune (below) would otherwise
# take disk space the trainer image needs.
freed=$(pm image prune -f 2>/dev/null | wc -l)
graph_root=$(pm info --format '{{.Store.GraphRoot}}')
echo "  removed $freed dangling image(s); $(df -h --output=avail "$graph_root" | tail -n 1 | tr -d ' ') free in $graph_root"
check "build docker/Dockerfile (local Debian/Python/Rust bases)" build_cpu
check "build a Prometheus image (Debian's prometheus package)" build_prometheus
check "starts as user 10001 on a read-only root and answers /readyz" start_nonroot_readonly
check "POST /v1/score in the container = sslmem score on the host" same_scores_as_host
check "HEALTHCHECK passes (podman healthcheck run)" healthcheck_passes
check "/metrics passes promtool check metrics" metrics_pass_promtool
check "Prometheus with docker/prometheus scrapes it: target up, sslmem_ series" prometheus_scrapes
check "SIGTERM during in-flight requests: they complete, exit 0 in drain time" drains_on_sigterm
check "burst under --memory: 413/429 answers, no OOM kill" burst_under_memory_limit
check "a mounted bundle of one's own (SSLMEM_BUNDLE), /v1/bundle name+hash" mounted_bundle
check "podman kube play of docker/k8s/base: ready with its probes" kube_play_base
check "audit Jobs: N indexed shards + merge = unsharded audit, byte for byte" audit_jobs
check "build docker/Dockerfile.train (torch from this machine's install)" build_train
check "sslmem-train in its image: one tiny epoch, then resumes as complete" train_one_epoch
if [[ ${SSLMEM_CONTAINERS_CUDA:-0} == 1 ]]; then
  check "build docker/Dockerfile.cuda" pm build --format docker --network host -f docker/Dockerfile.cuda -t localhost/sslmem-test/sslmem:cuda .
else
  skip "docker/Dockerfile.cuda: not built. Its base nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 comes only from an image registry (none is reachable here) and running it needs an NVIDIA GPU; SSLMEM_CONTAINERS_CUDA=1 builds it where the base can be pulled"
fi
# Each rebuild leaves the previous image untagged (the trainer's is 4.6 GB): remove those
# dangling images so that repeated runs on one machine do not fill its disk. Layers that the
# current images build on are their parents, not dangling, and stay as the build cache.
freed=$(pm image prune -f 2>/dev/null | wc -l)
echo "  removed $freed dangling image(s) left by earlier builds"
echo "container checks took $((SECONDS - begin)) s"
echo "containers: $npass passed, $nfail failed, $nskip skipped"
((nfail == 0))
