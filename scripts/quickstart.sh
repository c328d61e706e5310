#!/usr/bin/env bash
# The main job on the default model pair, with its own set-up: installs ONNX Runtime and the
# datasets, builds sslmem, and audits the trained pair in models/fashion-mnist-canaries on real
# Fashion-MNIST: every example of its split sets (candidate, shared, independent, extra) and of
# its planted canaries is scored, compared, evaluated as a membership test, and written up in
# out/quickstart/report.html. `sslmem audit` prints the summary itself (per set, each check
# with its verdict, the membership evaluation, the most memorized candidates).
# SSLMEM_BUNDLE picks another bundle (with a split); N=500 audits the first 500 of each set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets
cargo build --release --locked --bin sslmem
# Where cargo put it (CARGO_TARGET_DIR or the build config may move target/).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/sslmem"
bundle=${SSLMEM_BUNDLE:-models/fashion-mnist-canaries}
out=out/quickstart
n=${N:-0}
limit=()
[[ $n != 0 ]] && limit=(--limit "$n")
rm -rf "$out"
$bin audit --bundle "$bundle" --out "$out" --pairs 10 "${limit[@]}"
