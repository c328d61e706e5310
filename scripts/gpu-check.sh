#!/usr/bin/env bash
# The CUDA check: sslmem on an NVIDIA GPU against sslmem on the CPU and against PyTorch on the
# GPU, ready to run unchanged on a machine with a GPU, the onnxruntime-gpu libraries and a
# python3, without network and without Rust (the binary is built elsewhere). See
# docs/benchmarks.md, "CUDA check".
#
#   scripts/gpu-check.sh [options]          scripts/gpu-check.sh --help for the options
#
# What it checks, in order, after checking its prerequisites:
#   1. refusal: `--device cuda` with a library path that does not exist, and with the library
#      copied alone into a folder (no CUDA provider beside it), exits 2 with a clear message and
#      scores nothing (no silent fall-back to the CPU);
#   2. parity: `sslmem score` on CUDA and on the CPU, same images, seed and K: per image
#      |Δscore|, |Δalign_f| and |Δalign_g| at most 1e-4 (PARITY_BOUND in scripts/gpu_check.py,
#      with its reason);
#   3. serve: `sslmem serve --device cuda` reports provider cuda in GET /v1/bundle and in the
#      sslmem_info metric, scores one image through POST /v1/score (as the CLI did, within the
#      bound), and exits 0 on SIGTERM;
#   4. throughput (a measurement, not a check): `sslmem score` on CUDA and on the CPU at each
#      --batch-sizes value, best of --repeats, and scripts/bench_score.py (PyTorch eager) on the GPU.
# It writes OUT/gpu-check.json (everything, with the machine, the GPU and the versions) and
# OUT/gpu-check.md (the tables to paste into docs/benchmarks.md).
#
# Test images: the bundle's planted canaries (models/fashion-mnist-canaries/canaries, 150 PNGs
# in the repository), then pictures generated deterministically by scripts/gpu_check.py (the
# standard library only): no dataset and no network needed on the GPU machine.
#
# --cpu-only runs the half that needs no GPU (scripts/test-gpu-check.sh runs it in CI): parity
# becomes CPU against CPU at the smallest and largest batch size, serve and the baselines run on
# the CPU, and the refusal test runs as above.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
ort_version=1.31.1
gpu_lib_default="$home/onnxruntime/$ort_version/gpu/site/onnxruntime/capi/libonnxruntime.so.$ort_version"
cpu_lib_default="$home/onnxruntime/$ort_version/cpu/libonnxruntime.so.$ort_version"

usage() {
  cat <<EOF
usage: scripts/gpu-check.sh [options]

Checks sslmem on an NVIDIA GPU: refusal without a CUDA provider, parity of scores with the CPU
(bound 1e-4), \`serve --device cuda\`, and throughput against the CPU and PyTorch eager on the
GPU. Writes OUT/gpu-check.json and OUT/gpu-check.md.

options:
  --bin PATH             sslmem built with --features cuda
                         (default: \$SSLMEM_BIN, else $root/target/release/sslmem)
  --ort-lib PATH         libonnxruntime.so.$ort_version of onnxruntime-gpu, or its folder
                         (default: \$ORT_DYLIB_PATH, else where \`scripts/setup.sh --cuda\` puts it:
                         $gpu_lib_default)
  --bundle DIR           model bundle (default: $root/models/fashion-mnist-canaries)
  --images N             images for parity (default: 200)
  --throughput-images N  images for throughput (default: 1000)
  --pairs K              view pairs per image (default: 10)
  --batch-sizes LIST     views per forward pass, comma-separated (default: 64,256,1024,4096)
  --repeats R            timed runs per setting, the best kept (default: 3)
  --gpu N                CUDA device (default: 0)
  --out DIR              where gpu-check.json, gpu-check.md and work/ go (default: out/gpu-check)
  --python PATH          python for the helper and the PyTorch baseline (default: python3)
  --port N               port for the serve check (default: 0, a free one)
  --no-baseline          skip the PyTorch baseline
  --cpu-only             no GPU: parity CPU against CPU, serve and baseline on the CPU; the
                         library defaults to \$ORT_DYLIB_PATH, else $cpu_lib_default
  -h, --help             this text

exit status:
  0  every check passed        1  a check failed (the report says which)
  2  bad arguments (or a python that cannot run the helper)
  3  the sslmem binary is missing or does not run
  4  the ONNX Runtime library is missing, cannot be loaded, or is not the GPU build
  5  the binary was built without the \`cuda\` feature (cargo build --release --features cuda)
  6  no GPU visible, or ONNX Runtime's CUDA provider does not start
EOF
}

die() { # status message
  echo "gpu-check: $2" >&2
  exit "$1"
}
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac }
positive() { # flag value
  [[ $2 =~ ^[1-9][0-9]*$ ]] || die 2 "$1 takes a positive integer, not '$2'"
}

bin=${SSLMEM_BIN:-$root/target/release/sslmem}
lib='' lib_source=''
bundle=$root/models/fashion-mnist-canaries
images=200 throughput_images=1000 pairs=10 batch_sizes=64,256,1024,4096 repeats=3 gpu=0
out=out/gpu-check python=python3 port=0 baseline=1 cpu_only=0

while (($#)); do
  flag=$1
  case $flag in
    -h | --help) usage; exit 0 ;;
    --no-baseline) baseline=0; shift; continue ;;
    --cpu-only) cpu_only=1; shift; continue ;;
    --bin | --ort-lib | --bundle | --images | --throughput-images | --pairs | --batch-sizes | --repeats | \
      --gpu | --out | --python | --port) ;;
    *) die 2 "unknown argument '$flag' (see --help)" ;;
  esac
  (($# >= 2)) || die 2 "$flag needs a value (see --help)"
  value=$2
  shift 2
  case $flag in
    --bin) bin=$value ;;
    --ort-lib) lib=$value lib_source=--ort-lib ;;
    --bundle) bundle=$value ;;
    --images) positive "$flag" "$value"; images=$value ;;
    --throughput-images) positive "$flag" "$value"; throughput_images=$value ;;
    --pairs) positive "$flag" "$value"; pairs=$value ;;
    --batch-sizes)
      [[ $value =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
        die 2 "--batch-sizes takes positive integers separated by commas (e.g. 64,256), not '$value'"
      batch_sizes=$value ;;
    --repeats) positive "$flag" "$value"; repeats=$value ;;
    --gpu) [[ $value =~ ^[0-9]+$ ]] || die 2 "--gpu takes a device number, not '$value'"; gpu=$value ;;
    --out) out=$value ;;
    --python) python=$value ;;
    --port)
      if ! [[ $value =~ ^[0-9]+$ ]] || ((value > 65535)); then die 2 "--port takes 0..65535, not '$value'"; fi
      port=$value ;;
  esac
done

device=cuda:$gpu
mode=cuda
((cpu_only)) && mode=cpu-only
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null ||
  die 2 "--python $python: cannot run it, or older than Python 3.8"
helper() { "$python" "$root/scripts/gpu_check.py" "$@"; }

# --- prerequisites ------------------------------------------------------------------------
[[ $bin == */* ]] || bin=$(command -v "$bin" || echo "$bin")
bin=$(abspath "$bin")
[[ -f $bin && -x $bin ]] ||
  die 3 "no sslmem binary at $bin: build one with \`cargo build --release --features cuda\` and give it with --bin or SSLMEM_BIN"
version=$("$bin" --version 2>&1) || die 3 "$bin does not run: $version"
bundle=$(abspath "$bundle")
[[ -f $bundle/sslmem.json ]] || die 2 "--bundle $bundle: no sslmem.json there"

# Which refusal a missing library gets says whether the `cuda` feature is in: a build without
# it refuses every `--device cuda` for that reason first.
probe=$("$bin" --device "$device" --ort-lib /nonexistent/libonnxruntime.so inspect --bundle "$bundle" 2>&1 >/dev/null) &&
  die 1 "$bin --device $device accepted a library that does not exist"
# shellcheck disable=SC2016 # the backquotes are sslmem's words
if grep -q 'without the `cuda` feature' <<<"$probe"; then cuda_feature=no; else cuda_feature=yes; fi
if [[ $mode == cuda && $cuda_feature == no ]]; then
  die 5 "$bin ($version) was built without the \`cuda\` feature: build it with \`cargo build --release --features cuda\` (or run with --cpu-only)"
fi

if [[ -z $lib ]]; then
  if [[ -n ${ORT_DYLIB_PATH:-} ]]; then
    lib=$ORT_DYLIB_PATH lib_source=ORT_DYLIB_PATH
  elif [[ $mode == cuda ]]; then
    lib=$gpu_lib_default lib_source="the default of scripts/setup.sh --cuda"
  else
    lib=$cpu_lib_default lib_source="the default of scripts/setup.sh"
  fi
fi
lib=$(abspath "$lib")
[[ -d $lib ]] && lib=$lib/libonnxruntime.so.$ort_version
[[ -f $lib ]] || die 4 "no ONNX Runtime library at $lib (from $lib_source): run \`scripts/setup.sh --cuda\` \
(on a machine with network, then copy its $home/onnxruntime/$ort_version/gpu folder to the same place here), \
or give --ort-lib"
if [[ $mode == cuda && ! -f $(dirname "$lib")/libonnxruntime_providers_cuda.so ]]; then
  die 4 "$lib (from $lib_source) is not the GPU build: no libonnxruntime_providers_cuda.so beside it \
(\`scripts/setup.sh --cuda\` installs onnxruntime-gpu $ort_version)"
fi

if [[ $mode == cuda ]]; then
  if command -v nvidia-smi >/dev/null; then
    gpus=$(nvidia-smi -L 2>&1) || die 6 "nvidia-smi sees no GPU: $gpus"
    grep -q '^GPU ' <<<"$gpus" || die 6 "nvidia-smi lists no GPU: $gpus"
  else
    echo "gpu-check: no nvidia-smi on PATH; the GPU's name will be missing from the report" >&2
  fi
  check_device=$device
else
  check_device=cpu
fi
inspect=$("$bin" --device "$check_device" --ort-lib "$lib" inspect --bundle "$bundle" 2>&1) || {
  ((cpu_only)) && die 4 "sslmem cannot run on the CPU with $lib: $(tail -n 3 <<<"$inspect")"
  die 6 "sslmem cannot run on $device with $lib: $(tail -n 3 <<<"$inspect")"
}
[[ $mode == cpu-only ]] || grep -q '"provider": "cuda"' <<<"$inspect" ||
  die 6 "sslmem --device $device did not report the CUDA provider: $(tail -n 5 <<<"$inspect")"

# --- the checks ---------------------------------------------------------------------------
out=$(abspath "$out")
work=$out/work
rm -rf "$work"
mkdir -p "$work"
rec=$work/records.jsonl
echo "gpu-check: $mode, $version, $lib, work in $work" >&2
helper meta --record "$rec" --bin "$bin" --lib "$lib" --lib-source="$lib_source" --bundle "$bundle" \
  --mode "$mode" --device "$device" --gpu "$gpu" --cuda-feature "$cuda_feature" --images "$images" \
  --throughput-images "$throughput_images" --pairs "$pairs" --batch-sizes "$batch_sizes" --repeats "$repeats"

helper images --record "$rec" --bundle "$bundle" --out "$work" --parity "$images" \
  --throughput "$throughput_images" || die 2 "could not write the test images"
first=$work/parity/0000.png

# Every check runs even when one before it failed; the report decides the exit status.
run_opts=(--record "$rec" --bin "$bin" --lib "$lib" --bundle "$bundle" --pairs "$pairs")
helper refusal --record "$rec" --bin "$bin" --lib "$lib" --device "$device" --bundle "$bundle" \
  --image "$first" --cuda-feature "$cuda_feature" --work "$work" || true

read -r small large < <(awk -F, '{ lo = hi = $1 + 0
  for (i = 2; i <= NF; i++) { if ($i + 0 < lo) lo = $i + 0; if ($i + 0 > hi) hi = $i + 0 }
  print lo, hi }' <<<"$batch_sizes")
if [[ $mode == cuda ]]; then
  a=(cpu cpu 256) b=("$device" "$device" 256)
else
  a=("cpu, batch $small" cpu "$small") b=("cpu, batch $large" cpu "$large")
fi
helper scores "${run_opts[@]}" --device "${a[1]}" --batch-size "${a[2]}" --images "$work/parity" --out "$work/scores-a.jsonl" &&
  helper scores "${run_opts[@]}" --device "${b[1]}" --batch-size "${b[2]}" --images "$work/parity" --out "$work/scores-b.jsonl" &&
  helper parity --record "$rec" --a "$work/scores-a.jsonl" --b "$work/scores-b.jsonl" --label-a "${a[0]}" \
    --label-b "${b[0]}" --expect "$images" || true

serve_device=${b[1]} provider=cpu
[[ $mode == cuda ]] && provider=cuda
[[ -f $work/scores-b.jsonl ]] &&
  helper serve "${run_opts[@]}" --device "$serve_device" --port "$port" --image "$first" \
    --cli-scores "$work/scores-b.jsonl" --expect-provider "$provider" --work "$work" || true

helper throughput "${run_opts[@]}" --device cpu --images "$work/throughput" --batch-sizes "$batch_sizes" \
  --repeats "$repeats" --work "$work" || true
if [[ $mode == cuda ]]; then
  helper throughput "${run_opts[@]}" --device "$device" --images "$work/throughput" --batch-sizes "$batch_sizes" \
    --repeats "$repeats" --work "$work" || true
fi
if ((baseline)); then
  helper baseline --record "$rec" --bundle "$bundle" --images "$work/throughput" --pairs "$pairs" \
    --device "${b[1]}" --batch-sizes "$batch_sizes" || true
fi

helper report --record "$rec" --out "$out"
