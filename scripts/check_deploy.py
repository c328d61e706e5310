"""Cross-file checks of the deployment files that schema validation cannot see: ports, probe
paths, drain timing, selectors and names must agree between the Dockerfiles, the rendered
Kubernetes manifests, the compose file and the Prometheus configuration.

    python scripts/check_deploy.py RENDERED_BASE RENDERED_GPU RENDERED_TRAIN RENDERED_AUDIT RENDERED_AUDIT_MERGE \
        RENDERED_TRAIN_SUBSAMPLE RENDERED_TRAIN_SUBSAMPLE_BUNDLE

(scripts/check-deploy.sh renders the kustomizations and runs this with PyYAML.)
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
errors = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        errors.append(what)


def dockerfile_env(path):
    """ENV KEY=VALUE pairs of a Dockerfile's last stage (continuation lines joined)."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    last = text.split("\nFROM ")[-1]
    env = {}
    for line in last.splitlines():
        if line.startswith("ENV "):
            for k, v in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[k] = v
    entry = re.findall(r"^ENTRYPOINT (\[.*\])$", last, re.M)
    cmd = re.findall(r"^CMD (\[.*\])$", last, re.M)
    expose = re.findall(r"^EXPOSE (\d+)$", last, re.M)
    return env, json.loads(entry[-1]) if entry else [], json.loads(cmd[-1]) if cmd else [], expose


def docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def one(ds, kind):
    found = [d for d in ds if d["kind"] == kind]
    check(len(found) == 1, f"exactly one {kind}")
    return found[0] if found else {}


def audit_checks(audit_path, merge_path):
    """The sharded audit: an Indexed Job whose index picks the shard and its folder on a shared
    volume, N in one place, and a merge Job that reads those folders with the same image,
    bundle and dataset."""
    ds = docs(audit_path)
    job, pvc = one(ds, "Job"), one(ds, "PersistentVolumeClaim")
    merge = one(docs(merge_path), "Job")
    spec = job["spec"]
    check(spec.get("completionMode") == "Indexed", "audit: Indexed Job")
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    check(c.get("command") == ["sslmem", "audit"], "audit: runs `sslmem audit`")
    env = {e["name"]: e for e in c.get("env", [])}
    idx = [n for n, e in env.items() if "job-completion-index" in json.dumps(e)]
    n = spec.get("completions")
    shard = env.get("SSLMEM_AUDIT_SHARD", {}).get("value")
    check(bool(idx) and shard == f"$({idx[0]})/{n}", f"audit: shard I/N from the index, N = completions ({shard}, completions {n})")
    out = env.get("SSLMEM_AUDIT_OUT", {}).get("value", "")
    check(bool(idx) and out.endswith(f"/$({idx[0]})"), f"audit: each index writes its own folder ({out})")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    shared = [p for p in mounts if out.startswith(p + "/")]
    claim = vols[mounts[shared[0]]].get("persistentVolumeClaim", {}).get("claimName") if shared else None
    check(claim == pvc["metadata"]["name"] and "ReadWriteMany" in pvc["spec"]["accessModes"], "audit: shard folders go to the ReadWriteMany volume")
    check(pod["securityContext"].get("runAsNonRoot") is True and c["securityContext"].get("readOnlyRootFilesystem") is True, "audit: non-root, read-only root filesystem")

    mpod = merge["spec"]["template"]["spec"]
    m = mpod["containers"][0]
    check(m.get("command") == ["sslmem", "audit-merge"], "audit merge: runs `sslmem audit-merge`")
    check(m["image"] == c["image"], "audit merge: the shards' image (the bundle path they recorded is in it)")
    menv = {e["name"]: e.get("value") for e in m.get("env", [])}
    parent = out.rsplit("/", 1)[0]
    check(m.get("args", [])[:1] == [parent], f"audit merge: reads the shards' folder {parent}")
    for k in ["SSLMEM_FASHION_MNIST", "SSLMEM_BUNDLE", "SSLMEM_DATASET"]:
        check(menv.get(k) == env.get(k, {}).get("value"), f"audit merge: same {k} as the shards")
    mout = menv.get("SSLMEM_AUDIT_OUT") or ""
    check(bool(mout) and not mout.startswith(parent + "/"), f"audit merge: writes outside the shards' folder ({mout})")
    mmounts = {mm["mountPath"]: mm["name"] for mm in m["volumeMounts"]}
    mvols = {v["name"]: v for v in mpod["volumes"]}
    mclaim = mvols.get(mmounts.get(shared[0] if shared else "", ""), {}).get("persistentVolumeClaim", {}).get("claimName")
    check(mclaim == claim, "audit merge: mounts the shards' volume at the same path")


def subsample_checks(train_path, sub_path, bundle_path):
    """The many-model bundle: an Indexed Job whose index picks the encoder (--index) and
    whose M (--models) is its `completions`, all writing into one folder of the training
    volume, and a bundle Job that reads that folder with the same image and volume."""
    ds = docs(sub_path)
    job, pvc = one(ds, "Job"), one(ds, "PersistentVolumeClaim")
    train_pvc = one(docs(train_path), "PersistentVolumeClaim")
    check(pvc == train_pvc, "subsample: the pairs' volume, as docker/k8s/train declares it")
    spec = job["spec"]
    check(spec.get("completionMode") == "Indexed", "subsample: Indexed Job")
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    idx = [n for n, e in env.items() if "job-completion-index" in json.dumps(e)]
    args = c.get("args", [])

    def flag(name):
        return args[args.index(name) + 1] if name in args[:-1] else None

    check(args[:1] == ["subsample"] and "--resume" in args, "subsample: runs `sslmem-train subsample --resume`")
    check(bool(idx) and flag("--index") == f"$({idx[0]})", f"subsample: --index from the completion index ({flag('--index')})")
    models = flag("--models") or ""
    m = re.fullmatch(r"\$\((\w+)\)", models)
    value = env.get(m.group(1), {}).get("value") if m else models
    n = spec.get("completions")
    check(value == str(n) and n >= 2 and n % 2 == 0, f"subsample: --models is completions, even ({models} = {value}, completions {n})")
    out = flag("--out") or ""
    mounts = {mm["mountPath"]: mm["name"] for mm in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    shared = [p for p in mounts if out.startswith(p + "/")]
    claim = vols[mounts[shared[0]]].get("persistentVolumeClaim", {}).get("claimName") if shared else None
    check(claim == pvc["metadata"]["name"] and "ReadWriteMany" in pvc["spec"]["accessModes"], f"subsample: every index writes {out} on the ReadWriteMany volume")
    check(pod["securityContext"].get("runAsNonRoot") is True and c["securityContext"].get("readOnlyRootFilesystem") is True, "subsample: non-root, read-only root filesystem")

    bjob = one(docs(bundle_path), "Job")
    bpod = bjob["spec"]["template"]["spec"]
    b = bpod["containers"][0]
    bargs = b.get("args", [])
    check(bargs[:1] == ["subsample-bundle"] and "--out" in bargs[:-1] and bargs[bargs.index("--out") + 1] == out, f"subsample bundle: runs `subsample-bundle --out {out}`")
    check(b["image"] == c["image"], "subsample bundle: the training pods' image (and so their dataset, which the plan names)")
    bmounts = {mm["mountPath"]: mm["name"] for mm in b["volumeMounts"]}
    bvols = {v["name"]: v for v in bpod["volumes"]}
    bclaim = bvols.get(bmounts.get(shared[0] if shared else "", ""), {}).get("persistentVolumeClaim", {}).get("claimName")
    check(bclaim == claim, "subsample bundle: mounts the training volume at the same path")
    check(bpod["securityContext"].get("runAsNonRoot") is True and b["securityContext"].get("readOnlyRootFilesystem") is True, "subsample bundle: non-root, read-only root filesystem")


def main(base_path, gpu_path, train_path, audit_path, merge_path, sub_path, sub_bundle_path):
    env, entry, cmd, expose = dockerfile_env("docker/Dockerfile")
    port = int(env["SSLMEM_PORT"])
    drain = int(env["SSLMEM_DRAIN_TIMEOUT"])
    check(entry == ["sslmem", "serve"], "CPU image runs `sslmem serve`")
    check(expose == [str(port)], "CPU image EXPOSEs SSLMEM_PORT")
    cenv, centry, ccmd, cexpose = dockerfile_env("docker/Dockerfile.cuda")
    check(centry + ccmd == ["sslmem", "serve", "--device", "cuda"], "CUDA image runs `sslmem serve --device cuda`")
    check(cexpose == [str(port)] and cenv["SSLMEM_PORT"] == str(port), "CUDA image uses the same port")
    def build_copies(path):
        stage = (ROOT / path).read_text().split(" AS build\n")[1].split("\nFROM ")[0]
        return [l for l in stage.splitlines() if l.startswith("COPY ") and "--from" not in l]

    cpu_copies = build_copies("docker/Dockerfile")
    check(cpu_copies == build_copies("docker/Dockerfile.cuda"), "CUDA image builds from the same sources")
    check(cpu_copies == [l for l in build_copies("docker/Dockerfile.train") if "/opt/torch" not in l], "trainer image builds from the same sources")
    tenv, tentry, tcmd, _ = dockerfile_env("docker/Dockerfile.train")
    check(tentry == ["sslmem-train"] and "--resume" in tcmd, "train image runs `sslmem-train pair --resume`")

    for name, path in [("base", base_path), ("gpu", gpu_path)]:
        ds = docs(path)
        dep, svc = one(ds, "Deployment"), one(ds, "Service")
        hpa, pdb, sm = one(ds, "HorizontalPodAutoscaler"), one(ds, "PodDisruptionBudget"), one(ds, "ServiceMonitor")
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        check(ports.get("http") == port, f"{name}: container port 'http' is the image's {port}")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: liveness on /healthz")
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: readiness on /readyz")
        pre = c["lifecycle"]["preStop"]["exec"]["command"]
        pre_s = int(pre[1]) if pre[:1] == ["sleep"] else 0
        kenv = {e["name"]: e for e in c.get("env", [])}
        kdrain = int(kenv["SSLMEM_DRAIN_TIMEOUT"]["value"]) if "SSLMEM_DRAIN_TIMEOUT" in kenv else drain
        grace = pod["terminationGracePeriodSeconds"]
        check(grace >= pre_s + kdrain + 5, f"{name}: grace period {grace}s covers preStop {pre_s}s + drain {kdrain}s + 5s")
        check(kenv.get("SSLMEM_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "sslmem-api-key", f"{name}: API key from the Secret")
        sc = c["securityContext"]
        check(sc.get("readOnlyRootFilesystem") is True and pod["securityContext"].get("runAsNonRoot") is True, f"{name}: non-root, read-only root filesystem")
        check(pod["securityContext"].get("runAsUser") == 10001, f"{name}: runs as the image's user 10001")
        sel = dep["spec"]["selector"]["matchLabels"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in sel.items()), f"{name}: Deployment selector matches its pods")
        check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), f"{name}: Service selects the pods")
        check(all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), f"{name}: PDB selects the pods")
        check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], f"{name}: HPA targets the Deployment")
        check(hpa["spec"]["minReplicas"] >= 2 and pdb["spec"].get("maxUnavailable") == 1, f"{name}: HPA keeps 2+ replicas, PDB lets one go")
        svc_ports = {p["name"] for p in svc["spec"]["ports"]}
        check(all(e["port"] in svc_ports and e["path"] == "/metrics" for e in sm["spec"]["endpoints"]), f"{name}: ServiceMonitor scrapes a Service port's /metrics")
        svc_labels = svc["metadata"].get("labels", {})
        check(all(svc_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()), f"{name}: ServiceMonitor selects the Service")
        gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu")
        if name == "gpu":
            check(gpus == 1 and "cuda" in c["image"], f"gpu: one GPU per pod and the CUDA image ({c['image']})")
            check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])) and pod.get("nodeSelector"), "gpu: node selector and GPU toleration")
        else:
            check(gpus is None and "cuda" not in c["image"], "base: CPU image, no GPU")

    ds = docs(train_path)
    job, pvc = one(ds, "Job"), one(ds, "PersistentVolumeClaim")
    spec = job["spec"]
    check(spec.get("completionMode") == "Indexed", "train: Indexed Job")
    c = spec["template"]["spec"]["containers"][0]
    args = " ".join(c.get("args", []))
    idx_env = [e["name"] for e in c.get("env", []) if "job-completion-index" in json.dumps(e)]
    check(bool(idx_env) and f"$({idx_env[0]})" in args and "--resume" in args, "train: each index trains its own pair (--seed/--out from the index) and resumes")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    check(vols[[k for k, v in mounts.items() if v == "/bundles"][0]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], "train: bundles go to the persistent volume")

    audit_checks(audit_path, merge_path)
    subsample_checks(train_path, sub_path, sub_bundle_path)

    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    check(compose["services"]["sslmem"]["ports"] == [f"{port}:{port}"], "compose: service port")
    grace = compose["services"]["sslmem"].get("stop_grace_period", "10s")
    check(int(grace.rstrip("s")) >= drain + 5, "compose: stop grace period covers the drain")
    prom = yaml.safe_load((ROOT / "docker/prometheus/prometheus.yml").read_text())
    targets = {t for sc in prom["scrape_configs"] for g in sc["static_configs"] for t in g["targets"]}
    check({f"sslmem:{port}", f"sslmem-cuda:{port}"} <= targets, "prometheus: scrapes both compose services")
    dash = json.loads((ROOT / "docker/grafana/dashboards/sslmem.json").read_text())
    check(dash.get("uid") == "sslmem" and len(dash["panels"]) >= 8, "grafana: dashboard provisioned with its panels")
    if errors:
        print(f"{len(errors)} deployment check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:8])
