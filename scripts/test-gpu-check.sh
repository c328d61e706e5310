#!/usr/bin/env bash
# Tests of scripts/gpu-check.sh that need no GPU (scripts/test.sh runs them): --help, refused
# arguments and their exit statuses (bad flag 2, no binary 3, no library or not the GPU build 4,
# no `cuda` feature 5, CUDA provider that does not start 6), the refusal of --device cuda with
# the CPU-only ONNX Runtime library, and --cpu-only runs whose gpu-check.json and gpu-check.md
# are read field by field; then the helper's failure paths: a parity over the bound, a serve
# answering with another provider, and a report with a failed check each exit 1.
#
# Builds sslmem twice (debug, with and without the `cuda` feature; the plain build last, so
# target/debug/sslmem is left as `cargo build` makes it). Uses the ONNX Runtime CPU library of
# scripts/setup.sh, and the PyTorch of `scripts/setup.sh --train` for the baseline when there
# is one (required when SSLMEM_REQUIRE_TORCH_EXPORT is set, as scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${SSLMEM_HOME:-$HOME/.cache/sslmem}
cpu_lib=$home/onnxruntime/1.31.1/cpu/libonnxruntime.so.1.31.1
[[ -f $cpu_lib ]] || { echo "test-gpu-check: no $cpu_lib: run scripts/setup.sh" >&2; exit 1; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1" >&2; fails=$((fails + 1)); }

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --quiet --locked --bin sslmem --features cuda
cp "$target_dir/debug/sslmem" "$t/sslmem-cuda"
cargo build --quiet --locked --bin sslmem
cp "$target_dir/debug/sslmem" "$t/sslmem"
torch_python=
for p in "$home"/torch/*/bin/python; do [[ -x $p ]] && torch_python=$p; done
if [[ -z $torch_python && -n ${SSLMEM_REQUIRE_TORCH_EXPORT:-} ]]; then
  echo "test-gpu-check: PyTorch is required but not installed: run scripts/setup.sh --train" >&2
  exit 1
fi

# expect STATUS TEXT NAME -- COMMAND...: COMMAND exits STATUS and says TEXT on stderr.
expect() {
  local status=$1 text=$2 name=$3
  shift 4
  local rc=0
  "$@" >"$t/stdout" 2>"$t/stderr" || rc=$?
  if [[ $rc == "$status" ]] && grep -qF -- "$text" "$t/stderr"; then
    ok "$name (exit $rc)"
  else
    bad "$name: exit $rc (expected $status), stderr: $(tail -n 3 "$t/stderr")"
  fi
}
check=scripts/gpu-check.sh

# --- arguments and prerequisites ----------------------------------------------------------
if $check --help >"$t/help" && grep -q -- '--cpu-only' "$t/help" && grep -q '^exit status' "$t/help" &&
  grep -q 'setup.sh --cuda' "$t/help"; then ok "--help"; else bad "--help"; fi
expect 2 "unknown argument '--frob'" "unknown flag" -- $check --frob
expect 2 "--images takes a positive integer" "--images 0" -- $check --images 0
expect 2 "--pairs needs a value" "flag without its value" -- $check --pairs
expect 2 "--batch-sizes takes positive integers" "--batch-sizes 64,x" -- $check --batch-sizes 64,x
expect 2 "--port takes 0..65535" "--port 70000" -- $check --port 70000
expect 2 "cannot run it" "--python that does not exist" -- $check --python "$t/no-python"
expect 3 "no sslmem binary at $t/none" "missing binary" -- $check --bin "$t/none"
expect 3 "no sslmem binary at $t/none" "missing binary from SSLMEM_BIN" -- env SSLMEM_BIN="$t/none" $check
expect 2 "no sslmem.json" "bundle that is not one" -- $check --bin "$t/sslmem-cuda" --bundle "$t"
# shellcheck disable=SC2016 # the backquotes are sslmem's words
expect 5 'built without the `cuda` feature' "binary without the cuda feature" -- $check --bin "$t/sslmem"
expect 4 "no ONNX Runtime library at $t/gone/libonnxruntime.so.1.31.1 (from --ort-lib)" "missing library" -- \
  $check --bin "$t/sslmem-cuda" --ort-lib "$t/gone/libonnxruntime.so.1.31.1"
expect 4 "no ONNX Runtime library at $t/gone.so (from ORT_DYLIB_PATH)" "missing library from ORT_DYLIB_PATH" -- \
  env ORT_DYLIB_PATH="$t/gone.so" $check --bin "$t/sslmem-cuda"
expect 4 "is not the GPU build" "CPU-only library given for CUDA" -- \
  $check --bin "$t/sslmem-cuda" --ort-lib "$(dirname "$cpu_lib")"
# A folder that looks like the GPU build (a CUDA provider file beside a CPU-only library): the
# CUDA provider cannot start, which is status 6 whether or not this machine has a GPU.
mkdir -p "$t/fake-gpu"
cp "$cpu_lib" "$t/fake-gpu/"
: >"$t/fake-gpu/libonnxruntime_providers_cuda.so"
expect 6 "CUDA execution provider did not start" "CUDA provider that does not start" -- \
  $check --bin "$t/sslmem-cuda" --ort-lib "$t/fake-gpu"

# --- a --cpu-only run with the cuda build: generated RGB images, PyTorch baseline ----------
"$t/sslmem" bundle random --out "$t/rgb" --arch resnet-mini-32x32x3 --seed 3 2>/dev/null
baseline=(--no-baseline)
[[ -n $torch_python ]] && baseline=(--python "$torch_python")
if $check --cpu-only --bin "$t/sslmem-cuda" --bundle "$t/rgb" --images 4 --throughput-images 6 --pairs 2 \
  --batch-sizes 8,32 --repeats 1 "${baseline[@]}" --out "$t/run-a" >"$t/a.out" 2>"$t/a.err"; then
  ok "--cpu-only run with the cuda build (exit 0)"
else
  bad "--cpu-only run with the cuda build: $(tail -n 20 "$t/a.err")"
fi
if python3 - "$t/run-a" "$torch_python" <<'EOF'; then ok "its gpu-check.json and gpu-check.md"; else bad "its gpu-check.json and gpu-check.md"; fi
import json, pathlib, sys
out, torch = pathlib.Path(sys.argv[1]), sys.argv[2]
d = json.loads((out / "gpu-check.json").read_text())
md = (out / "gpu-check.md").read_text()
m = d["meta"]
assert d["passed"] is True and m["mode"] == "cpu-only", (d["passed"], m["mode"])
assert m["sslmem"]["cuda_feature"] is True and m["sslmem"]["version"].startswith("sslmem "), m["sslmem"]
assert m["machine"]["cpus"] >= 1 and m["machine"]["gpu"] is None, m["machine"]
assert m["settings"]["batch_sizes"] == [8, 32] and m["settings"]["pairs"] == 2, m["settings"]
assert m["settings"]["parity_bound"] == 1e-4, m["settings"]
# No canaries in a random bundle: every image generated, 3 channels, 32x32.
assert d["images"]["generated"] == 6 and d["images"]["channels"] == 3 and d["images"]["size"] == [32, 32], d["images"]
[p] = d["parity"]
assert p["passed"] and p["images"] == 4 and (p["a"], p["b"]) == ("cpu, batch 8", "cpu, batch 32"), p
assert all(0 <= p["max_abs_diff"][f] <= 1e-4 for f in ("score", "align_f", "align_g")), p
rows = {(r["engine"], r["device"], r["batch"]): r for r in d["throughput"]}
for b in (8, 32):
    r = rows[("sslmem", "cpu", b)]
    assert r["ok"] and r["images"] == 6 and r["images_per_s"] > 0 and r["seconds"] > 0, r
    if torch:
        r = rows[("pytorch", "cpu", b)]
        assert r["ok"] and r["images"] == 6 and r["images_per_s"] > 0, r
[s] = d["serve"]
assert s["passed"] and s["bundle_provider"] == "cpu" and s["metrics_provider"] == "cpu", s
assert s["score_status"] == 200 and s["score_abs_diff"] <= 1e-4 and s["exit_after_sigterm"] == 0, s
[r] = d["refusal"]
assert r["passed"] and r["cuda_feature"] and r["device"] == "cuda:0", r
msgs = [c["message"] for c in r["cases"]]
assert all(c["exit"] == 2 and not c["wrote_scores"] for c in r["cases"]), r["cases"]
assert "was not found at" in msgs[0] and "CUDA execution provider did not start with" in msgs[1], msgs
assert {c["name"].split(" ")[0] for c in d["checks"]} >= {"parity", "serve", "refusal:"}, d["checks"]
assert all(c["passed"] for c in d["checks"]), d["checks"]
assert "| batch (views) | sslmem cpu images/s |" in md, md
assert "\n| 8 | " in md and "\n| 32 | " in md, md
if torch:
    assert "PyTorch eager cpu images/s" in md and "sslmem cpu / PyTorch cpu" in md, md
assert "| parity cpu, batch 32 vs cpu, batch 8, 4 images | pass:" in md, md
assert "| serve --device cpu | pass:" in md and "| refusal: --device cuda:0 without a CUDA provider | pass:" in md, md
assert "**FAIL**" not in md
EOF

# --- a --cpu-only run with the plain build: the bundle's canaries, no baseline -------------
if $check --cpu-only --bin "$t/sslmem" --images 3 --throughput-images 3 --pairs 2 --batch-sizes 16 --repeats 1 \
  --no-baseline --out "$t/run-b" >"$t/b.out" 2>"$t/b.err"; then
  ok "--cpu-only run with the plain build (exit 0)"
else
  bad "--cpu-only run with the plain build: $(tail -n 20 "$t/b.err")"
fi
if python3 - "$t/run-b" <<'EOF'; then ok "its report"; else bad "its report"; fi
import json, pathlib, sys
d = json.loads((pathlib.Path(sys.argv[1]) / "gpu-check.json").read_text())
assert d["passed"] and d["meta"]["sslmem"]["cuda_feature"] is False
assert d["images"]["canaries"] == 3 and d["images"]["generated"] == 0, d["images"]
[r] = d["refusal"]
assert r["passed"] and all("without the `cuda` feature" in c["message"] for c in r["cases"]), r
assert not [x for x in d["throughput"] if x["engine"] == "pytorch"] and not d["baseline_skipped"]
EOF

# --- the helper's failure paths: each must exit 1 ------------------------------------------
helper() { python3 scripts/gpu_check.py "$@"; }
rec=$t/run-a/work/records.jsonl
python3 - "$t/run-a/work/scores-a.jsonl" "$t/shifted.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows[-1]["score"] += 2e-4  # over the 1e-4 bound
open(sys.argv[2], "w").write("".join(json.dumps(r) + "\n" for r in rows))
EOF
expect 1 "over the bound: |Δscore| 0.0002" "parity over the bound" -- \
  helper parity --record "$t/p.jsonl" --a "$t/run-a/work/scores-a.jsonl" --b "$t/shifted.jsonl" \
  --label-a x --label-b y --expect 4
expect 1 "expected the same 3 images" "parity with an image missing" -- \
  helper parity --record "$t/p.jsonl" --a "$t/run-a/work/scores-a.jsonl" --b "$t/shifted.jsonl" \
  --label-a x --label-b y --expect 3
expect 1 "FAIL GET /v1/bundle provider" "serve answering with another provider" -- \
  helper serve --record "$t/s.jsonl" --bin "$t/sslmem" --lib "$cpu_lib" --device cpu \
  --bundle "$t/rgb" --pairs 2 --image "$t/run-a/work/parity/0000.png" \
  --cli-scores "$t/run-a/work/scores-b.jsonl" --expect-provider cuda --work "$t"
# A binary that falls back to the CPU when asked for CUDA: the refusal check must catch it.
cat >"$t/falls-back" <<EOF
#!/usr/bin/env bash
args=("\$@")
for i in "\${!args[@]}"; do
  [[ \${args[i]} == cuda:0 ]] && args[i]=cpu
  [[ \${args[i]} == *libonnxruntime.so* ]] && args[i]=$cpu_lib
done
exec "$t/sslmem" "\${args[@]}"
EOF
chmod +x "$t/falls-back"
expect 1 "refusal, library without the CUDA provider: FAIL (exit 0)" "a silent fall-back to the CPU" -- \
  helper refusal --record "$t/r.jsonl" --bin "$t/falls-back" --lib "$cpu_lib" --device cuda:0 --bundle "$t/rgb" \
  --image "$t/run-a/work/parity/0000.png" --cuda-feature yes --work "$t/refusal"
cp "$rec" "$t/failed.jsonl"
head -n 1 "$t/p.jsonl" >>"$t/failed.jsonl"
expect 1 "SOME CHECKS FAILED" "report with a failed check" -- helper report --record "$t/failed.jsonl" --out "$t/failed"
if grep -q '| parity y vs x, 4 images | \*\*FAIL\*\*' "$t/failed/gpu-check.md" &&
  python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["passed"] is False' "$t/failed/gpu-check.json"; then
  ok "the failed report says which check failed"
else
  bad "the failed report: $(cat "$t/failed/gpu-check.md")"
fi
# The test images are a function of their index only.
helper images --record "$t/i.jsonl" --bundle "$t/rgb" --out "$t/img1" --parity 2 --throughput 5 2>/dev/null
helper images --record "$t/i.jsonl" --bundle "$t/rgb" --out "$t/img2" --parity 2 --throughput 5 2>/dev/null
if diff -r "$t/img1" "$t/img2" >/dev/null &&
  cmp -s "$t/img1/throughput/0004.png" "$t/run-a/work/throughput/0004.png"; then
  ok "test images are deterministic"
else
  bad "test images differ between runs"
fi

if ((fails)); then
  echo "test-gpu-check: $fails failed" >&2
  exit 1
fi
echo "test-gpu-check: all passed"
