#!/usr/bin/env bash
# The whole test suite, with its own set-up: formatting, lints, unit, property and
# integration tests (real ONNX Runtime, real Fashion-MNIST, the `onnx` checker).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --datasets --python
export SSLMEM_REQUIRE_ONNX_CHECKER=1
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --lib --tests --locked
