#!/usr/bin/env bash
# The whole test suite, with its own set-up: formatting, lints (with and without the
# trainer), unit, property and integration tests (real ONNX Runtime, real Fashion-MNIST,
# the `onnx` checker, libtorch for the trainer, the container images' entry points), the
# deployment files' checks (hadolint, compose, Kubernetes schemas; scripts/check-deploy.sh),
# the Python client's tests against real `sslmem serve` processes, and the container images
# built with podman and run as a user would (scripts/test-containers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets --python --train --browser --client
LIBTORCH=$(cat "${SSLMEM_HOME:-$HOME/.cache/sslmem}/torch/LIBTORCH")
export LIBTORCH SSLMEM_REQUIRE_ONNX_CHECKER=1 SSLMEM_REQUIRE_BROWSER=1 SSLMEM_REQUIRE_SCHEMATHESIS=1 SSLMEM_REQUIRE_TORCH_EXPORT=1
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features train -- -D warnings
cargo clippy --all-targets --locked --features cuda -- -D warnings
cargo test --lib --tests --locked --features train
# The Python client (clients/python) against the sslmem binary `cargo test` just built.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
SSLMEM_BIN="$target_dir/debug/sslmem" \
  "${SSLMEM_HOME:-$HOME/.cache/sslmem}/pyclient/bin/python" -m pytest -q clients/python/tests
# scripts/gpu-check.sh without a GPU: its arguments, refusals and --cpu-only report (builds
# debug sslmem with and without `cuda`, the plain one last).
scripts/test-gpu-check.sh
scripts/check-deploy.sh
# Last: it reuses the debug sslmem built above as the reference for the containers' scores.
scripts/test-containers.sh
