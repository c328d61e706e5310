"""The steps of scripts/gpu-check.sh that handle data: test images, parity, timed runs, the
serve and refusal checks, and the JSON + markdown report. Standard library only (Python 3.8+),
so it runs with whatever python the GPU machine has; the PyTorch baseline runs in a child
process with the same interpreter.

Every step appends its findings, one JSON object a line, to a records file; `report` turns
that file into gpu-check.json and gpu-check.md. A step exits 1 when its check failed (after
recording why) and 2 when it could not run.

    python3 scripts/gpu_check.py STEP --help
"""
import argparse
import base64
import datetime
import json
import math
import os
import pathlib
import platform
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

# The parity bound, in score units (score = align_g - align_f, each a mean distance between
# l2-normalised representations, so in [0, 2]). Both devices get the same augmented views (made
# on the CPU by sslmem); only the encoders' float32 kernels differ (MLAS against cuDNN/cuBLAS,
# TF32 off), whose other summation orders should move these distances by float32 rounding over
# sums of hundreds of terms, of the order of 1e-6. 1e-4 leaves a hundredfold margin and is a
# thousandth of the gaps an audit reads (0.1 between sets).
PARITY_BOUND = 1e-4

SCRIPT_DIR = pathlib.Path(__file__).resolve().parent


def record(path, kind, **fields):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(kind=kind, **fields)) + "\n")


def say(msg):
    print(f"gpu-check: {msg}", file=sys.stderr, flush=True)


def tail(text, n=1500):
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


# --- images -------------------------------------------------------------------------------


def write_png(path, width, height, channels, pixels):
    """An 8-bit grayscale (channels 1) or RGB (channels 3) PNG; pixels row-major, interleaved."""
    row = width * channels
    raw = b"".join(b"\x00" + bytes(pixels[y * row:(y + 1) * row]) for y in range(height))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    color = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    pathlib.Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                   + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def synthetic(index, width, height, channels):
    """A deterministic picture: a shaded background, a few filled ellipses and boxes, noise.
    Seeded by its index only (string seeds hash with SHA-512: the same on every machine)."""
    rng = random.Random(f"sslmem-gpu-check:{index}")
    base = [rng.randint(0, 90) for _ in range(channels)]
    slope = [rng.uniform(-2.0, 2.0) for _ in range(channels)]
    shapes = []
    for _ in range(rng.randint(1, 4)):
        shapes.append((rng.choice("eb"), rng.uniform(0, width), rng.uniform(0, height),
                       rng.uniform(2, width / 2), rng.uniform(2, height / 2),
                       [rng.randint(60, 255) for _ in range(channels)]))
    px = []
    for y in range(height):
        for x in range(width):
            value = [base[c] + slope[c] * (x + y) / 2 for c in range(channels)]
            for kind, cx, cy, rx, ry, ink in shapes:
                dx, dy = (x - cx) / rx, (y - cy) / ry
                if (kind == "e" and dx * dx + dy * dy <= 1) or (kind == "b" and abs(dx) <= 1 and abs(dy) <= 1):
                    value = list(ink)
            px.extend(max(0, min(255, int(v + rng.uniform(-8, 8)))) for v in value)
    return px


def step_images(a):
    man = json.loads((a.bundle / "sslmem.json").read_text())
    inp = man["input"]
    width, height, channels = inp["width"], inp["height"], inp["channels"]
    if channels not in (1, 3):
        raise SystemExit(f"gpu_check.py: the bundle's input has {channels} channels; test images are made for 1 or 3")
    count = max(a.parity, a.throughput)
    canaries = sorted((a.bundle / "canaries").glob("*.png"))[:count]
    folders = {"parity": a.out / "parity", "throughput": a.out / "throughput"}
    for d in folders.values():
        d.mkdir(parents=True, exist_ok=True)
    listing = []
    for i in range(count):
        dest = folders["parity" if i < a.parity else "throughput"] / f"{i:04d}.png"
        if i < len(canaries):
            shutil.copyfile(canaries[i], dest)
            listing.append({"file": dest.name, "from": str(canaries[i].relative_to(a.bundle))})
        else:
            write_png(dest, width, height, channels, synthetic(i, width, height, channels))
            listing.append({"file": dest.name, "from": "generated"})
        # The throughput set is the first --throughput images, the parity set the first --parity.
        if i < a.parity and i < a.throughput:
            shutil.copyfile(dest, folders["throughput"] / dest.name)
    (a.out / "images.json").write_text(json.dumps(listing, indent=1))
    summary = {"count": count, "parity": a.parity, "throughput": a.throughput,
               "canaries": len(canaries), "generated": count - len(canaries),
               "size": [height, width], "channels": channels}
    record(a.record, "images", **summary)
    say(f"{count} test images in {a.out}: {len(canaries)} of the bundle's canaries, "
        f"{count - len(canaries)} generated")


# --- running sslmem -----------------------------------------------------------------------


def sslmem(a, device, *args, timeout=900):
    """Runs the sslmem binary with the library and device given; returns (rc, stderr, seconds)."""
    cmd = [str(a.bin), "--device", device, "--ort-lib", str(a.lib), *map(str, args)]
    start = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s: {' '.join(cmd)}", float(timeout)
    return p.returncode, p.stderr.decode(errors="replace"), time.perf_counter() - start


def score_rows(path):
    rows = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[pathlib.Path(r["input"]).name] = r
    return rows


def step_scores(a):
    """One `sslmem score` over the parity images, kept for the parity and serve checks."""
    rc, err, secs = sslmem(a, a.device, "score", "--bundle", a.bundle, "--pairs", a.pairs, "--seed", 0,
                           "--batch-size", a.batch_size, "--out", a.out, a.images)
    if rc != 0:
        record(a.record, "scores", device=a.device, ok=False, error=tail(err))
        say(f"sslmem score --device {a.device} failed (exit {rc}):\n{tail(err)}")
        sys.exit(1)
    record(a.record, "scores", device=a.device, ok=True, file=str(a.out), seconds=secs)


def step_parity(a):
    ra, rb = score_rows(a.a), score_rows(a.b)
    fields = ("score", "align_f", "align_g")
    problems = []
    if len(ra) != a.expect or set(ra) != set(rb):
        problems.append(f"expected the same {a.expect} images on both sides, got {len(ra)} and {len(rb)}")
    worst = {f: 0.0 for f in fields}
    worst_input = {f: None for f in fields}
    for name in sorted(set(ra) & set(rb)):
        for f in fields:
            x, y = ra[name][f], rb[name][f]
            if not (isinstance(x, (int, float)) and isinstance(y, (int, float))
                    and math.isfinite(x) and math.isfinite(y)):
                problems.append(f"{name}: {f} is not a finite number ({x!r}, {y!r})")
                continue
            d = abs(x - y)
            if d > worst[f]:
                worst[f], worst_input[f] = d, name
    over = [f for f in fields if worst[f] > a.bound]
    if over:
        problems.append("over the bound: " + ", ".join(f"|Δ{f}| {worst[f]:.3g} ({worst_input[f]})" for f in over))
    passed = not problems
    record(a.record, "parity", a=a.label_a, b=a.label_b, images=len(set(ra) & set(rb)), bound=a.bound,
           max_abs_diff={f: worst[f] for f in fields}, worst_image={f: worst_input[f] for f in fields},
           passed=passed, problems=problems)
    verdict = "pass" if passed else "FAIL"
    say(f"parity {a.label_b} vs {a.label_a}: {verdict}: max |Δscore| {worst['score']:.3g}, "
        f"|Δalign_f| {worst['align_f']:.3g}, |Δalign_g| {worst['align_g']:.3g} (bound {a.bound:g})"
        + ("".join(f"\n  {p}" for p in problems)))
    sys.exit(0 if passed else 1)


def step_throughput(a):
    """`sslmem score` over every image at each batch size, best of --repeats; and over one image
    (start-up: library, sessions, the load-time check, CUDA's context) to take off."""
    images = sorted(a.images.glob("*.png"))
    n = len(images)
    failed = False
    out = a.work / f"throughput-{a.device.replace(':', '')}.jsonl"

    def best(args):
        times = []
        for _ in range(a.repeats):
            rc, err, secs = sslmem(a, a.device, "score", "--bundle", a.bundle, "--pairs", a.pairs, "--seed", 0,
                                   "--out", out, *args)
            if rc != 0:
                return None, f"exit {rc}: {tail(err)}"
            times.append(secs)
        return min(times), None

    startup, err = best(["--batch-size", min(a.batch_sizes), images[0]])
    if err:
        say(f"sslmem score --device {a.device} on one image failed: {err}")
        record(a.record, "throughput", engine="sslmem", device=a.device, batch=None, ok=False, error=err)
        sys.exit(1)
    record(a.record, "startup", engine="sslmem", device=a.device, seconds=startup)
    for b in a.batch_sizes:
        secs, err = best(["--batch-size", b, a.images])
        if err:
            failed = True
            say(f"sslmem score --device {a.device} --batch-size {b} failed: {err}")
            record(a.record, "throughput", engine="sslmem", device=a.device, batch=b, ok=False, error=err)
            continue
        rows = len(score_rows(out))
        # The rate after start-up only where scoring is a quarter of the run or more: below
        # that the difference of two timings is mostly their noise.
        steady = (n - 1) / (secs - startup) if secs - startup >= secs / 4 and n > 1 else None
        record(a.record, "throughput", engine="sslmem", device=a.device, batch=b, ok=rows == n, images=n,
               pairs=a.pairs, seconds=secs, images_per_s=n / secs, startup_seconds=startup,
               steady_images_per_s=steady, error=None if rows == n else f"{rows} scores for {n} images")
        failed |= rows != n
        say(f"sslmem {a.device:7} batch {b:5}: {n / secs:9.1f} images/s whole process"
            + (f", {steady:9.1f} after start-up" if steady else ""))
    sys.exit(1 if failed else 0)


def step_baseline(a):
    """scripts/bench_score.py (PyTorch eager) at each batch size, with this interpreter. Missing
    modules or a PyTorch without the device skip it (recorded, said); it is a comparison, not a
    check of sslmem."""
    probe = subprocess.run([sys.executable, "-c", "import torch, torchvision, onnx, numpy, PIL; print(torch.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        why = tail(probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "import failed", 300)
        record(a.record, "baseline", device=a.device, ok=False, skipped=f"{sys.executable}: {why}")
        say(f"PyTorch baseline skipped: {sys.executable} cannot import torch, torchvision, onnx, numpy and PIL ({why})")
        return
    cmd = [sys.executable, str(SCRIPT_DIR / "bench_score.py"), str(a.bundle), str(a.images), str(a.pairs),
           "--device", a.device, "--batch", ",".join(map(str, a.batch_sizes)), "--json"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        record(a.record, "baseline", device=a.device, ok=False, skipped="timed out after 1800 s")
        say(f"PyTorch baseline on {a.device} timed out after 1800 s")
        return
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0:
        record(a.record, "baseline", device=a.device, ok=False, skipped=tail(p.stderr, 500))
        say(f"PyTorch baseline on {a.device} did not run (exit {p.returncode}):\n{tail(p.stderr)}")
        return
    for r, b in zip(rows, a.batch_sizes):
        record(a.record, "throughput", engine="pytorch", device=a.device, batch=b, ok=True, images=r["images"],
               pairs=r["pairs"], seconds=r["seconds"], images_per_s=r["images_per_s"],
               steady_images_per_s=r["images_per_s"], torch=r["torch"], gpu=r["gpu"])
        say(f"pytorch {a.device:7} batch {b:5}: {r['images_per_s']:9.1f} images/s (after load and warm-up)")


# --- serve ----------------------------------------------------------------------------------


def http(method, url, body=None, timeout=60):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def step_serve(a):
    log_path = a.work / f"serve-{a.device.replace(':', '')}.log"
    cmd = [str(a.bin), "--device", a.device, "--ort-lib", str(a.lib), "--log-format", "text", "serve",
           "--bundle", str(a.bundle), "--host", "127.0.0.1", "--port", str(a.port),
           "--pairs", str(a.pairs), "--seed", "0", "--drain-timeout", "10"]
    checks, facts = [], {}

    def check(name, ok, detail=""):
        checks.append({"check": name, "passed": bool(ok), "detail": detail})
        say(f"serve --device {a.device}: {'pass' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
        return ok

    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), NO_COLOR="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base, deadline = None, time.monotonic() + a.ready_timeout
        while base is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"listening on (http://[0-9.]+:\d+)", log_path.read_text(errors="replace"))
            if m:
                base = m.group(1)
            else:
                time.sleep(0.2)
        if base:
            detail = base
        elif proc.poll() is not None:
            detail = f"exited with status {proc.poll()} before listening"
        else:
            detail = f"not listening after {a.ready_timeout:g} s"
        started = check("started and listening", base is not None, detail)
        if started:
            status, _ = http("GET", base + "/readyz")
            check("GET /readyz", status == 200, f"status {status}")
            status, text = http("GET", base + "/v1/bundle")
            info = json.loads(text) if status == 200 else {}
            facts["bundle_provider"] = info.get("provider")
            facts["bundle_device"] = info.get("device")
            check("GET /v1/bundle provider", info.get("provider") == a.expect_provider,
                  f"status {status}, provider {info.get('provider')!r}, device {info.get('device')!r}")
            status, text = http("GET", base + "/metrics")
            m = re.search(r'^sslmem_info\{([^}]*)\} 1$', text, re.M) if status == 200 else None
            provider = re.search(r'provider="([^"]*)"', m.group(1)).group(1) if m else None
            facts["metrics_provider"] = provider
            check("GET /metrics sslmem_info provider", provider == a.expect_provider,
                  f"status {status}, provider label {provider!r}")
            image = pathlib.Path(a.image)
            body = json.dumps({"images": [{"name": image.name, "data": base64.b64encode(image.read_bytes()).decode()}],
                               "pairs": a.pairs, "seed": 0}).encode()
            status, text = http("POST", base + "/v1/score", body, timeout=120)
            resp = json.loads(text) if status == 200 else {}
            results = resp.get("results") or [{}]
            served = results[0].get("score")
            cli = score_rows(a.cli_scores).get(image.name, {}).get("score")
            diff = abs(served - cli) if isinstance(served, (int, float)) and isinstance(cli, (int, float)) else None
            facts.update(score_status=status, score=served, cli_score=cli, score_abs_diff=diff,
                         score_provider=resp.get("provider"))
            check("POST /v1/score", status == 200 and resp.get("provider") == a.expect_provider
                  and diff is not None and diff <= a.bound,
                  f"status {status}, provider {resp.get('provider')!r}, score {served!r} vs the CLI's {cli!r} "
                  f"(bound {a.bound:g})")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                rc = None
            facts["exit_after_sigterm"] = rc
            check("SIGTERM: exits 0", rc == 0, f"exit {rc}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    passed = all(c["passed"] for c in checks)
    if not passed:
        say(f"serve log ({log_path}):\n{tail(log_path.read_text(errors='replace'))}")
    record(a.record, "serve", device=a.device, expect_provider=a.expect_provider, passed=passed, checks=checks, **facts)
    sys.exit(0 if passed else 1)


# --- refusal --------------------------------------------------------------------------------


def step_refusal(a):
    """`--device cuda` with no usable CUDA provider must exit 2 with a clear message and score
    nothing: a library path that does not exist, and the library copied alone into a folder (no
    CUDA provider beside it; for a CPU-only library, none in it either)."""
    alone = a.work / "no-cuda-provider"
    alone.mkdir(parents=True, exist_ok=True)
    copy = alone / a.lib.name
    shutil.copyfile(a.lib, copy)
    if a.cuda_feature == "yes":
        cases = [("library path that does not exist", a.work / "missing" / a.lib.name,
                  "ONNX Runtime 1.31.1 was not found at"),
                 ("library without the CUDA provider", copy, "CUDA execution provider did not start with")]
    else:
        cases = [("library path that does not exist", a.work / "missing" / a.lib.name, "without the `cuda` feature"),
                 ("library without the CUDA provider", copy, "without the `cuda` feature")]
    results, passed = [], True
    for i, (what, lib, expect) in enumerate(cases):
        out = a.work / f"refused-{i}.jsonl"
        cmd = [str(a.bin), "--device", a.device, "--ort-lib", str(lib), "score", "--bundle", str(a.bundle),
               "--pairs", "2", "--out", str(out), str(a.image)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        message = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        message = message.replace(str(a.work), "WORK")
        ok = p.returncode == 2 and expect in p.stderr and "panicked" not in p.stderr and not out.exists()
        passed &= ok
        results.append({"case": what, "library": str(lib), "exit": p.returncode, "message": message,
                        "expected": expect, "wrote_scores": out.exists(), "passed": ok})
        say(f"refusal, {what}: {'pass' if ok else 'FAIL'} (exit {p.returncode}): {message}")
    shutil.rmtree(alone, ignore_errors=True)
    record(a.record, "refusal", device=a.device, cuda_feature=a.cuda_feature == "yes", passed=passed, cases=results)
    sys.exit(0 if passed else 1)


# --- meta and report ------------------------------------------------------------------------


def cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_gib():
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def gpu_info(index):
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    p = subprocess.run([smi, "-i", str(index), "--query-gpu=name,driver_version,memory.total",
                        "--format=csv,noheader"], capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        return None
    name, driver, memory = [x.strip() for x in p.stdout.strip().splitlines()[0].split(",")]
    return {"name": name, "driver": driver, "memory": memory}


def git_revision():
    p = subprocess.run(["git", "-C", str(SCRIPT_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def step_meta(a):
    version = subprocess.run([str(a.bin), "--version"], capture_output=True, text=True).stdout.strip()
    manifest = json.loads((a.bundle / "sslmem.json").read_text())
    record(a.record, "meta",
           date=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
           mode=a.mode,
           machine={"arch": platform.machine(), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
                    "memory_gib": memory_gib(), "gpu": gpu_info(a.gpu) if a.mode == "cuda" else None},
           sslmem={"binary": str(a.bin), "version": version, "cuda_feature": a.cuda_feature == "yes"},
           onnxruntime={"library": str(a.lib), "source": a.lib_source},
           bundle={"path": str(a.bundle), "name": manifest.get("name"),
                   "encoders": {"f": len(manifest.get("f", [])), "g": len(manifest.get("g", []))}},
           settings={"images": a.images, "throughput_images": a.throughput_images, "pairs": a.pairs, "seed": 0,
                     "batch_sizes": a.batch_sizes, "repeats": a.repeats, "parity_bound": PARITY_BOUND,
                     "cuda_device": a.device},
           script_revision=git_revision(), python=sys.executable)


def fmt_rate(x):
    return "n/a" if x is None else f"{x:.1f}"


def markdown(doc):
    m, s = doc["meta"], doc["meta"]["settings"]
    mach = m["machine"]
    gpu = mach["gpu"]
    lines = [f"CUDA check, {m['date'][:10]} (`scripts/gpu-check.sh{' --cpu-only' if m['mode'] == 'cpu-only' else ''}`)",
             "",
             f"machine: {mach['arch']}, {mach['cpus']} cores ({mach['cpu_model']}), {mach['memory_gib']} GiB"
             + (f"; GPU: {gpu['name']} (driver {gpu['driver']}, {gpu['memory']})" if gpu else "; GPU: none used"),
             f"{m['sslmem']['version']} ({'with' if m['sslmem']['cuda_feature'] else 'without'} the cuda feature), "
             f"ONNX Runtime library {m['onnxruntime']['library']}",
             f"bundle: {m['bundle']['path']} ({m['bundle']['encoders']['f']} f + {m['bundle']['encoders']['g']} g "
             f"encoders); K={s['pairs']}, seed 0; throughput on {s['throughput_images']} images, best of "
             f"{s['repeats']}; parity on {s['images']}",
             ""]
    rows = [r for r in doc["throughput"] if r.get("ok")]
    columns = []
    for r in rows:
        key = (r["engine"], r["device"])
        if key not in columns:
            columns.append(key)
    header = ["batch (views)"] + [f"{'sslmem' if e == 'sslmem' else 'PyTorch eager'} {d} images/s" for e, d in columns]
    sslmem_cols = [c for c in columns if c[0] == "sslmem"]
    ratios = []
    cuda = next((c for c in sslmem_cols if c[1].startswith("cuda")), None)
    cpu = next((c for c in sslmem_cols if c[1] == "cpu"), None)
    torch_col = next((c for c in columns if c[0] == "pytorch"), None)
    if cuda and cpu:
        ratios.append(("sslmem CUDA / CPU", cuda, cpu))
    main = cuda or cpu
    if main and torch_col:
        ratios.append((f"sslmem {main[1]} / PyTorch {torch_col[1]}", main, torch_col))
    header += [r[0] for r in ratios]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    by = {(r["engine"], r["device"], r["batch"]): r for r in rows}
    for b in s["batch_sizes"]:
        cells = [str(b)]
        for e, d in columns:
            r = by.get((e, d, b))
            if r is None:
                cells.append("failed" if any(x["engine"] == e and x["device"] == d and x["batch"] == b
                                             for x in doc["throughput"]) else "n/a")
            elif e == "sslmem":
                cells.append(f"{fmt_rate(r['images_per_s'])} ({fmt_rate(r['steady_images_per_s'])})")
            else:
                cells.append(fmt_rate(r["images_per_s"]))
        for _, x, y in ratios:
            rx, ry = by.get((*x, b)), by.get((*y, b))
            vx = rx and rx["steady_images_per_s"]
            vy = ry and ry["steady_images_per_s"]
            cells.append(f"{vx / vy:.2f}" if vx and vy else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["",
              "sslmem: whole process, in brackets after start-up (one image's run taken off; n/a where "
              "scoring was under a quarter of the run); PyTorch: the scoring loop after loading and a warm-up "
              "pass. Ratios compare the after-start-up figures.",
              ""]
    if doc["startup"]:
        lines += ["sslmem start-up (one image, best of the runs): "
                  + ", ".join(f"{r['device']} {r['seconds']:.2f} s" for r in doc["startup"]), ""]
    for b in doc["baseline_skipped"]:
        lines += [f"PyTorch baseline on {b['device']} not run: {b['skipped']}", ""]
    lines += ["| check | result |", "|---|---|"]
    for c in doc["checks"]:
        summary = c["summary"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'}: {summary} |")
    return "\n".join(lines) + "\n"


def step_report(a):
    recs = [json.loads(line) for line in a.record.read_text().splitlines() if line.strip()]
    meta = next(r for r in recs if r["kind"] == "meta")
    doc = {"tool": "scripts/gpu-check.sh", "meta": meta, "images": next((r for r in recs if r["kind"] == "images"), None),
           "throughput": [r for r in recs if r["kind"] == "throughput"],
           "startup": [r for r in recs if r["kind"] == "startup"],
           "baseline_skipped": [r for r in recs if r["kind"] == "baseline" and r.get("skipped")],
           "parity": [r for r in recs if r["kind"] == "parity"],
           "serve": [r for r in recs if r["kind"] == "serve"],
           "refusal": [r for r in recs if r["kind"] == "refusal"],
           "scores": [r for r in recs if r["kind"] == "scores"]}
    checks = []
    for r in doc["scores"]:
        if not r["ok"]:
            checks.append({"name": f"sslmem score --device {r['device']}", "passed": False, "summary": r["error"]})
    for r in doc["parity"]:
        d = r["max_abs_diff"]
        checks.append({"name": f"parity {r['b']} vs {r['a']}, {r['images']} images", "passed": r["passed"],
                       "summary": f"max |Δscore| {d['score']:.2g}, |Δalign_f| {d['align_f']:.2g}, "
                                  f"|Δalign_g| {d['align_g']:.2g} (bound {r['bound']:g})"
                                  + "".join(f"; {p}" for p in r["problems"])})
    for r in doc["throughput"]:
        if not r["ok"]:
            checks.append({"name": f"{r['engine']} {r['device']} batch {r['batch']}", "passed": False,
                           "summary": r.get("error") or "failed"})
    for r in doc["serve"]:
        failed = [c for c in r["checks"] if not c["passed"]]
        summary = (f"/v1/bundle provider {r.get('bundle_provider')}, sslmem_info provider "
                   f"{r.get('metrics_provider')}, /v1/score {r.get('score_status')} (|Δscore| against the CLI "
                   f"{r.get('score_abs_diff') if r.get('score_abs_diff') is None else format(r['score_abs_diff'], '.2g')}),"
                   f" SIGTERM: exit {r.get('exit_after_sigterm')}")
        if failed:
            summary += "; failed: " + ", ".join(f"{c['check']} ({c['detail']})" for c in failed)
        checks.append({"name": f"serve --device {r['device']}", "passed": r["passed"], "summary": summary})
    for r in doc["refusal"]:
        checks.append({"name": f"refusal: --device {r['device']} without a CUDA provider", "passed": r["passed"],
                       "summary": "; ".join(f"{c['case']}: exit {c['exit']}, \"{c['message'][:200]}\""
                                            for c in r["cases"])})
    expected = {"parity", "serve", "refusal"}
    missing = sorted(k for k in expected if not doc[k])
    for k in missing:
        checks.append({"name": k, "passed": False, "summary": "did not run (see the log above)"})
    doc["checks"] = checks
    doc["passed"] = all(c["passed"] for c in checks)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu-check.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    (a.out / "gpu-check.md").write_text(md)
    print(md)
    say(f"{'all checks passed' if doc['passed'] else 'SOME CHECKS FAILED'}; wrote {a.out / 'gpu-check.json'} "
        f"and {a.out / 'gpu-check.md'}")
    sys.exit(0 if doc["passed"] else 1)


# --- command line ---------------------------------------------------------------------------


def sizes(text):
    try:
        v = [int(x) for x in text.split(",")]
    except ValueError:
        v = []
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of positive integers")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    P = pathlib.Path

    def common(p, *extra):
        p.add_argument("--record", type=P, required=True, help="records file (JSON lines), appended to")
        for name in extra:
            if name == "run":
                p.add_argument("--bin", type=P, required=True)
                p.add_argument("--lib", type=P, required=True)
                p.add_argument("--device", required=True)
                p.add_argument("--bundle", type=P, required=True)
                p.add_argument("--pairs", type=int, required=True)
        return p

    p = common(sub.add_parser("images", help="write the test images"))
    p.add_argument("--bundle", type=P, required=True)
    p.add_argument("--out", type=P, required=True)
    p.add_argument("--parity", type=int, required=True, help="images in OUT/parity")
    p.add_argument("--throughput", type=int, required=True, help="images in OUT/throughput")
    p.set_defaults(fn=step_images)

    p = common(sub.add_parser("scores", help="sslmem score over the parity images"), "run")
    p.add_argument("--images", type=P, required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", type=P, required=True)
    p.set_defaults(fn=step_scores)

    p = common(sub.add_parser("parity", help="compare two score files"))
    p.add_argument("--a", type=P, required=True)
    p.add_argument("--b", type=P, required=True)
    p.add_argument("--label-a", required=True)
    p.add_argument("--label-b", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--bound", type=float, default=PARITY_BOUND)
    p.set_defaults(fn=step_parity)

    p = common(sub.add_parser("throughput", help="time sslmem score at each batch size"), "run")
    p.add_argument("--images", type=P, required=True)
    p.add_argument("--batch-sizes", type=sizes, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", type=P, required=True)
    p.set_defaults(fn=step_throughput)

    p = common(sub.add_parser("baseline", help="the PyTorch eager baseline (scripts/bench_score.py)"))
    p.add_argument("--bundle", type=P, required=True)
    p.add_argument("--images", type=P, required=True)
    p.add_argument("--pairs", type=int, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--batch-sizes", type=sizes, required=True)
    p.set_defaults(fn=step_baseline)

    p = common(sub.add_parser("serve", help="sslmem serve: provider, metrics, one score, SIGTERM"), "run")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--image", type=P, required=True)
    p.add_argument("--cli-scores", type=P, required=True)
    p.add_argument("--expect-provider", required=True)
    p.add_argument("--bound", type=float, default=PARITY_BOUND)
    p.add_argument("--ready-timeout", type=float, default=300)
    p.add_argument("--work", type=P, required=True)
    p.set_defaults(fn=step_serve)

    p = common(sub.add_parser("refusal", help="--device cuda without a CUDA provider must refuse"))
    p.add_argument("--bin", type=P, required=True)
    p.add_argument("--lib", type=P, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--bundle", type=P, required=True)
    p.add_argument("--image", type=P, required=True)
    p.add_argument("--cuda-feature", choices=["yes", "no"], required=True)
    p.add_argument("--work", type=P, required=True)
    p.set_defaults(fn=step_refusal)

    p = common(sub.add_parser("meta", help="record the machine, the binary, the settings"))
    p.add_argument("--bin", type=P, required=True)
    p.add_argument("--lib", type=P, required=True)
    p.add_argument("--lib-source", required=True)
    p.add_argument("--bundle", type=P, required=True)
    p.add_argument("--mode", choices=["cuda", "cpu-only"], required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--gpu", type=int, default=0)
    p.add_argument("--cuda-feature", choices=["yes", "no"], required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--throughput-images", type=int, required=True)
    p.add_argument("--pairs", type=int, required=True)
    p.add_argument("--batch-sizes", type=sizes, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.set_defaults(fn=step_meta)

    p = common(sub.add_parser("report", help="write gpu-check.json and gpu-check.md"))
    p.add_argument("--out", type=P, required=True)
    p.set_defaults(fn=step_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
