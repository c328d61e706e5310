//! `sslmem-train` end to end on real data: split a few hundred Fashion-MNIST images, train f
//! and g for a few steps, export, load the bundle with the scoring core and score a
//! candidate image; and a run killed mid-way resumes and finishes with the same result.
#![cfg(feature = "train")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn train_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sslmem-train"));
    c.env("RUST_LOG", "warn");
    c
}

fn pair_args(out: &Path, epochs: &str) -> Vec<String> {
    [
        "--device",
        "cpu",
        "--threads",
        "2",
        "pair",
        "--out",
        out.to_str().expect("utf8"),
        "--subset",
        "400",
        "--test-subset",
        "200",
        "--epochs",
        epochs,
        "--batch-size",
        "32",
        "--lr",
        "0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("sslmem.json")).expect("manifest"))
        .expect("json")
}

#[test]
fn pair_trains_exports_and_scores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bundle");
    let o = train_bin()
        .args(pair_args(&out, "1"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&out);
    assert_eq!(m["format"], "sslmem-bundle/1");
    assert_eq!(
        m["representation"]["layers"]
            .as_array()
            .expect("layers")
            .len(),
        4
    );
    let split = &m["split"];
    let size = |k: &str| {
        split[k]
            .as_array()
            .expect("ranges")
            .iter()
            .map(|r| r[1].as_u64().expect("end") - r[0].as_u64().expect("start"))
            .sum::<u64>()
    };
    assert_eq!(
        (size("shared"), size("candidate"), size("independent")),
        (320, 40, 40)
    );
    let runs = m["training"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert!(r["parity_max_rel_err"].as_f64().expect("parity") <= 1e-4);
        let acc = r["eval"]["linear_probe_accuracy"].as_f64().expect("probe");
        assert!(
            acc > 0.3,
            "a linear probe on even briefly trained features beats chance (0.1): {acc}"
        );
        assert!(r["eval"]["knn_accuracy"].as_f64().expect("knn") > 0.2);
    }
    assert!(
        m["training"]["raw_pixel_linear_probe_accuracy"]
            .as_f64()
            .expect("raw")
            > 0.5
    );
    let log = std::fs::read_to_string(out.join("train-f0.jsonl")).expect("log");
    assert!(
        log.lines()
            .next()
            .is_some_and(|l| l.contains("\"epoch\":1") && l.contains("\"loss\"")),
        "{log}"
    );

    // The scoring core loads the bundle and scores a candidate image.
    let cand = split["candidate"][0][0].as_u64().expect("candidate");
    let o = common::run(&[
        "score",
        "--bundle",
        out.to_str().expect("utf8"),
        "--pairs",
        "4",
        &format!("fashion-mnist:train[{cand}]"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let s: Value = serde_json::from_str(common::stdout(&o).trim()).expect("json");
    assert!(s["score"].as_f64().expect("score").is_finite());
    assert_eq!(s["input"], format!("fashion-mnist:train#{cand}"));
}

#[test]
fn a_killed_run_resumes_and_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let straight = dir.path().join("straight");
    let o = train_bin()
        .args(pair_args(&straight, "2"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let resumed = dir.path().join("resumed");
    let mut child = train_bin()
        .args(pair_args(&resumed, "2"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    // Kill it as soon as f0 has a checkpoint (after its first epoch).
    let ckpt = resumed.join(".work").join("f0").join("checkpoint.json");
    let start = Instant::now();
    while !ckpt.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(!resumed.join("sslmem.json").exists());

    let mut args = pair_args(&resumed, "2");
    args.push("--resume".into());
    let o = train_bin().args(&args).output().expect("resume");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !resumed.join(".work").exists(),
        "work files are cleaned up after success"
    );

    // Every epoch logged exactly once, and the same encoders as without the interruption.
    let log = std::fs::read_to_string(resumed.join("train-f0.jsonl")).expect("log");
    let epochs: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["epoch"].as_u64())
        .collect();
    assert_eq!(epochs, [1, 2]);
    let (a, b) = (manifest(&straight), manifest(&resumed));
    assert_eq!(
        a["f"], b["f"],
        "f0.onnx is byte-identical after kill and resume"
    );
    assert_eq!(a["g"], b["g"]);

    // A second --resume of a finished bundle does nothing.
    let o = train_bin().args(&args).output().expect("again");
    assert!(o.status.success());
}
