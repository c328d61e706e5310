"""Helpers of scripts/test-containers.sh that are easier in Python than in bash.

  pngs DIR                     writes a few PNG test images (stdlib only: zlib + struct)
  same-scores CLI.jsonl SERVICE.json
                               the service's result fields equal `sslmem score`'s, exactly
  probes RENDERED.yaml DEPLOYMENT CONTAINER
                               the container's probes as JSON: kind, path, port number, period,
                               timeout, failure threshold (named ports resolved)
  job-argv RENDERED.yaml JOB [--index I] [--unset VAR] [--set VAR=VALUE] [--volume NAME=HOSTDIR]
           [--arg A]... IMAGE
                               `podman run` arguments (NUL-separated) that run JOB's container
                               as Kubernetes would for completion index I: its command, args,
                               env (fieldRef of the completion index, $(VAR) expansion), user,
                               read-only root and volume mounts.
"""

import json
import re
import struct
import sys
import zlib
from pathlib import Path

import yaml


def png(path, width, height, channels, seed):
    """A deterministic, non-trivial PNG (gradient plus a pattern) of the given size."""
    color = {1: 0, 3: 2}[channels]
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            for c in range(channels):
                rows.append((x * 7 + y * 13 + c * 50 + seed * 31 + (x * y) % 17) % 256)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )


def cmd_pngs(out):
    Path(out).mkdir(parents=True, exist_ok=True)
    for i, (w, h, c) in enumerate([(28, 28, 1), (28, 28, 1), (40, 31, 3), (64, 48, 3), (17, 23, 1)]):
        png(Path(out) / f"img{i}.png", w, h, c, i)


FIELDS = ["align_f", "align_g", "score", "score_ratio", "stderr", "ci95", "pairs"]


def cmd_same_scores(cli_path, service_path):
    cli = [json.loads(line) for line in Path(cli_path).read_text().splitlines() if line.strip()]
    service = json.loads(Path(service_path).read_text())["results"]
    if len(cli) != len(service):
        sys.exit(f"{len(cli)} results from the command line, {len(service)} from the service")
    for c, s in zip(cli, service):
        for k in FIELDS:
            if c[k] != s[k]:
                sys.exit(f"{s.get('input')}: {k} is {s[k]} in the container, {c[k]} on the host")
    print(f"{len(cli)} images: {', '.join(FIELDS)} equal to the last bit")
    for s in service:
        print(f"  {s['input']}: score {s['score']}, align_f {s['align_f']}, align_g {s['align_g']}")


def docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def one(path, kind, name):
    found = [d for d in docs(path) if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        sys.exit(f"{path}: expected one {kind} {name}, found {len(found)}")
    return found[0]


def cmd_probes(path, deployment, container):
    spec = one(path, "Deployment", deployment)["spec"]["template"]["spec"]
    c = next(c for c in spec["containers"] if c["name"] == container)
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
    out = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(kind)
        if p is None:
            continue
        get = p["httpGet"]
        port = get["port"]
        out.append({
            "kind": kind,
            "path": get["path"],
            "port": ports[port] if isinstance(port, str) else port,
            "period": p.get("periodSeconds", 10),
            "timeout": p.get("timeoutSeconds", 1),
            "failure_threshold": p.get("failureThreshold", 3),
        })
    print(json.dumps(out))


def expand(value, env):
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def cmd_job_argv(argv):
    path, job = argv[0], argv[1]
    index, unset, sets, volumes, extra = None, set(), {}, {}, []
    rest = argv[2:]
    while len(rest) > 1:
        flag, val = rest[0], rest[1]
        rest = rest[2:]
        if flag == "--index":
            index = val
        elif flag == "--unset":
            unset.add(val)
        elif flag == "--set":
            k, v = val.split("=", 1)
            sets[k] = v
        elif flag == "--volume":
            k, v = val.split("=", 1)
            volumes[k] = v
        elif flag == "--arg":
            extra.append(val)
        else:
            sys.exit(f"job-argv: unknown flag {flag}")
    if len(rest) != 1:
        sys.exit("job-argv: the image comes last")
    image = rest[0]
    spec = one(path, "Job", job)["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    run = ["--rm", "--network", "none"]
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if user is not None:
        run += ["--user", f"{user}:{group if group is not None else user}"]
    if sc.get("readOnlyRootFilesystem"):
        run += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        run += ["--security-opt", "no-new-privileges"]
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        run += ["--cap-drop", "ALL"]
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "").endswith(
                "['batch.kubernetes.io/job-completion-index']"):
            if index is None:
                sys.exit(f"{job}: {e['name']} is the completion index; give --index")
            env[e["name"]] = index
        else:
            sys.exit(f"{job}: env {e['name']}: only values and the completion index are supported")
    if index is not None:
        # Kubernetes sets it in every container of an Indexed Job.
        env["JOB_COMPLETION_INDEX"] = index
    for k in unset:
        env.pop(k, None)
    env.update(sets)
    for k, v in env.items():
        run += ["--env", f"{k}={v}"]
    by_name = {v["name"]: v for v in spec.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        vol = by_name[m["name"]]
        ro = ":ro" if m.get("readOnly") else ""
        if "emptyDir" in vol:
            run += ["--tmpfs", f"{m['mountPath']}:rw,size=256m,mode=1777"]
        elif m["name"] in volumes:
            run += ["--volume", f"{volumes[m['name']]}:{m['mountPath']}{ro}"]
        else:
            sys.exit(f"{job}: volume {m['name']}: give --volume {m['name']}=HOSTDIR")
    if "command" in c:
        run += ["--entrypoint", json.dumps(c["command"])]
    run.append(image)
    run += [expand(a, env) for a in c.get("args", [])] + extra
    sys.stdout.write("\0".join(run) + "\0")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "pngs":
        cmd_pngs(*args)
    elif cmd == "same-scores":
        cmd_same_scores(*args)
    elif cmd == "probes":
        cmd_probes(*args)
    elif cmd == "job-argv":
        cmd_job_argv(args)
    else:
        sys.exit(f"test_containers.py: unknown command {cmd} (see the docstring)")


if __name__ == "__main__":
    main()
