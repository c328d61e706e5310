//! `sslmem-train subsample` as Kubernetes runs it: the container of
//! docker/k8s/train/subsample/subsample-job.yaml, its `$(VAR)` references expanded as the
//! kubelet expands them (the completion index for the index variable, the container's env
//! for the rest) and its volume mapped to a temporary folder, is run once per index with a
//! few flags that make the training tiny; then the bundle step. The bundle lists the M
//! encoders in `f` with the membership record of `members(size, seed, M)` and loads; a
//! finished index run again does nothing; the bundle step refuses while an encoder is
//! missing, and odd `--models` is refused.
#![cfg(feature = "train")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use serde_yaml::Value as Yaml;

use sslmem::data::subsample::members;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pool: the first `SUBSET` Fashion-MNIST training images.
const SUBSET: usize = 64;

/// What the test takes from the Job: M, the container's env, the name of the variable that
/// holds the completion index, its args, and where the volume is mounted.
struct JobSpec {
    completions: usize,
    env: BTreeMap<String, String>,
    index_var: String,
    args: Vec<String>,
    mount: String,
}

fn read_job() -> JobSpec {
    let path = Path::new(ROOT).join("docker/k8s/train/subsample/subsample-job.yaml");
    let text = std::fs::read_to_string(&path).expect("read the Job");
    let job: Yaml = serde_yaml::from_str(&text).expect("YAML");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let c = &spec["template"]["spec"]["containers"][0];
    let (mut env, mut index_var) = (BTreeMap::new(), None);
    for e in c["env"].as_sequence().expect("env") {
        let name = e["name"].as_str().expect("name").to_string();
        if let Some(v) = e["value"].as_str() {
            env.insert(name, v.to_string());
        } else if e["valueFrom"]["fieldRef"]["fieldPath"]
            .as_str()
            .is_some_and(|p| p.contains("job-completion-index"))
        {
            index_var = Some(name);
        }
    }
    let args = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    let mount = c["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m["name"].as_str() == Some("bundles"))
        .and_then(|m| m["mountPath"].as_str())
        .expect("the bundles volume")
        .to_string();
    JobSpec {
        completions: spec["completions"].as_u64().expect("completions") as usize,
        env,
        index_var: index_var.expect("an env var from the completion index"),
        args,
        mount,
    }
}

impl JobSpec {
    /// Index `i`'s argv: `$(VAR)` expanded (an unknown reference is kept, as the kubelet
    /// keeps it), the volume's mount path mapped to `volume`.
    fn argv(&self, i: usize, volume: &Path) -> Vec<String> {
        let mut vars = self.env.clone();
        vars.insert(self.index_var.clone(), i.to_string());
        self.args
            .iter()
            .map(|a| {
                let mut out = a.clone();
                for (k, v) in &vars {
                    out = out.replace(&format!("$({k})"), v);
                }
                match out.strip_prefix(&self.mount) {
                    Some(rest) => format!("{}{rest}", volume.display()),
                    None => out,
                }
            })
            .collect()
    }

    /// The bundle folder the Job writes (its `--out`), mapped to `volume`.
    fn out(&self, volume: &Path) -> PathBuf {
        let argv = self.argv(0, volume);
        let at = argv.iter().position(|a| a == "--out").expect("--out");
        PathBuf::from(&argv[at + 1])
    }
}

/// Flags that make training tiny (they override the Job's env), and the CPU.
fn tiny() -> Vec<String> {
    [
        "--device",
        "cpu",
        "--threads",
        "2",
        "--subset",
        &SUBSET.to_string(),
        "--test-subset",
        "50",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--stem-stride",
        "2",
        "--monitor-every",
        "0",
        "--checkpoint-seconds",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `sslmem-train` with the container's env (values only) and `args`.
fn train(job: &JobSpec, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sslmem-train"))
        .envs(&job.env)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("run sslmem-train")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            let modified = e.metadata().and_then(|m| m.modified()).expect("mtime");
            out.insert(p.clone(), (std::fs::read(&p).expect("read"), modified));
        }
    }
    out
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("sslmem.json")).expect("manifest"))
        .expect("json")
}

// Over 100 lines: one scenario, in the order a cluster plays it (three indexes, the bundle
// step too early, the last index, a rerun), checked at each step.
#[test]
fn the_indexed_job_trains_every_encoder_and_the_bundle_step_writes_the_bundle() {
    let job = read_job();
    let m = job.completions;
    assert_eq!(m, 4, "the Job as shipped trains 4 encoders");
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("volume");
    let out = job.out(&volume);
    let run_index = |i: usize| {
        let mut args = job.argv(i, &volume);
        assert!(
            args.contains(&"--models".to_string()) && args.contains(&m.to_string()),
            "--models is the Job's completions: {args:?}"
        );
        args.extend(tiny());
        train(&job, &args)
    };
    let bundle_step = || {
        let args: Vec<String> = ["subsample-bundle", "--device", "cpu", "--out"]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string()])
            .collect();
        train(&job, &args)
    };

    for i in 0..m - 1 {
        let o = run_index(i);
        assert!(o.status.success(), "index {i}: {}", stderr(&o));
        assert!(
            out.join("encoders")
                .join(format!("m{i}"))
                .join("done.json")
                .is_file(),
            "index {i} is done"
        );
        assert!(
            !out.join("sslmem.json").exists(),
            "no bundle before all encoders are done"
        );
    }

    // The bundle step before the last encoder: refused, naming it.
    let o = bundle_step();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("m{}", m - 1)) && err.contains("not finished"),
        "{err}"
    );
    assert!(!out.join("sslmem.json").exists());

    // The last index writes the bundle by itself.
    let o = run_index(m - 1);
    assert!(o.status.success(), "index {}: {}", m - 1, stderr(&o));
    let auto = manifest(&out);

    // The bundle step, as its Job runs it after the Indexed Job: writes the same bundle.
    std::fs::remove_file(out.join("sslmem.json")).expect("rm manifest");
    let o = bundle_step();
    assert!(o.status.success(), "{}", stderr(&o));
    let b = manifest(&out);
    for k in ["f", "g", "subsample", "input", "representation", "augment"] {
        assert_eq!(auto[k], b[k], "{k}");
    }

    let files: Vec<&str> = b["f"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(files, ["f0.onnx", "f1.onnx", "f2.onnx", "f3.onnx"]);
    assert_eq!(b["g"], serde_json::json!([]));
    let sub = &b["subsample"];
    assert_eq!(sub["dataset"], "fashion-mnist");
    assert_eq!(sub["size"], SUBSET);
    assert_eq!(sub["seed"], 0);
    let want = serde_json::to_value(members(SUBSET, 0, m).expect("members")).expect("json");
    assert_eq!(sub["members"], want);
    let runs = b["training"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), m);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["seed"], i, "encoder I trains from seed + I");
        assert_eq!(r["train_examples"], SUBSET / 2);
        assert!(r["parity_max_rel_err"].as_f64().expect("parity") <= 1e-4);
        assert!(r["eval"]["linear_probe_accuracy"].as_f64().is_some());
        assert!(out.join(format!("train-f{i}.jsonl")).is_file());
    }
    let bundle = sslmem::bundle::Bundle::load(&out, &sslmem::runtime::RuntimeOptions::default())
        .expect("the bundle loads");
    assert_eq!(bundle.manifest.f.len(), m);
    assert!(bundle.manifest.g.is_empty());
    let rec = bundle.manifest.subsample.as_ref().expect("record");
    assert!(rec.is_member(0, rec.members[0].iter().next().expect("a member")));

    // A finished index run again (a retried pod) does nothing.
    let before = snapshot(&volume);
    let o = run_index(1);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(before == snapshot(&volume), "a rerun changed files");
}

#[test]
fn odd_models_and_an_index_outside_them_are_refused() {
    let job = read_job();
    let dir = tempfile::tempdir().expect("tempdir");
    for (extra, says) in [
        (["--models", "3"], "must be even"),
        (["--index", "4"], "not an encoder"),
    ] {
        let mut args = job.argv(0, dir.path());
        if let Some(at) = args.iter().position(|a| a == extra[0]) {
            args[at + 1] = extra[1].into();
        }
        args.extend(tiny());
        let o = train(&job, &args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    assert!(
        std::fs::read_dir(dir.path()).expect("ls").next().is_none(),
        "nothing written"
    );
}
