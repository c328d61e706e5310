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
        "--checkpoint-seconds",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Writes `m` as the manifest of the bundle at `out` with `fields` removed from every run
/// of `training.runs`, and runs `sslmem-train eval` on it.
fn eval_without(out: &Path, mut m: Value, fields: &[&str]) -> std::process::Output {
    for r in m["training"]["runs"].as_array_mut().expect("runs") {
        let r = r.as_object_mut().expect("run");
        for f in fields {
            r.remove(*f);
        }
    }
    std::fs::write(out.join("sslmem.json"), m.to_string()).expect("write");
    train_bin()
        .args(["--device", "cpu", "--threads", "2", "eval", "--bundle"])
        .arg(out)
        .output()
        .expect("eval")
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

    // `eval` re-measures what training recorded (a bundle made before a field existed gets
    // it): with every run's evaluation and spread removed, it writes them back, the kNN
    // accuracy and the spread equal to training's (the same exported backbone over the same
    // test subset), also when the bundle scores the projection (the probe is the backbone's).
    let mut bare = m.clone();
    bare["representation"]["output"] = "projection".into();
    let o = eval_without(&out, bare, &["eval", "spread"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = manifest(&out);
    for (was, now) in runs
        .iter()
        .zip(again["training"]["runs"].as_array().expect("runs"))
    {
        assert!(now["eval"]["linear_probe_accuracy"].is_f64(), "{now}");
        assert_eq!(
            now["eval"]["knn_accuracy"], was["eval"]["knn_accuracy"],
            "{now}"
        );
        assert_eq!(now["eval"]["test_examples"], 200, "{now}");
        for output in ["representation", "projection"] {
            let rank = |r: &Value| r["spread"][output]["effective_rank"].as_f64();
            let (a, b) = (rank(was).expect("trained"), rank(now).expect("re-measured"));
            assert!((a - b).abs() < 1e-3 * a, "{output}: {a} vs {b}");
        }
    }
}

/// Trains with `with_out(out)` straight through, and again killed as soon as f0 has its
/// first checkpoint and resumed; asserts that f0 logged `epochs` once each and that both
/// bundles hold the same encoders.
fn kill_resume_and_compare(with_out: impl Fn(&Path) -> Vec<String>, epochs: &[u64]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let straight = dir.path().join("straight");
    let o = train_bin().args(with_out(&straight)).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let resumed = dir.path().join("resumed");
    let mut child = train_bin()
        .args(with_out(&resumed))
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
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

    let mut args = with_out(&resumed);
    args.push("--resume".into());
    let o = train_bin().args(&args).output().expect("resume");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !resumed.join(".work").exists(),
        "work files are cleaned up after success"
    );

    // Every epoch logged exactly once, and the same encoders as without the interruption.
    let log = std::fs::read_to_string(resumed.join("train-f0.jsonl")).expect("log");
    let logged: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["epoch"].as_u64())
        .collect();
    assert_eq!(logged, epochs);
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

#[test]
fn a_killed_run_resumes_and_matches_an_uninterrupted_one() {
    // A checkpoint after every epoch: killed after epoch 1.
    kill_resume_and_compare(|out| pair_args(out, "2"), &[1, 2]);
}

#[test]
fn a_killed_dino_run_resumes_its_teacher_and_centre_exactly() {
    // DINO keeps state beside the online network (the EMA teacher and the running centre of
    // its outputs) and takes local crops: a resumed run must give the same encoders.
    kill_resume_and_compare(
        |out| {
            let mut a = pair_args(out, "2");
            a.extend(
                [
                    "--method",
                    "dino",
                    "--local-crops",
                    "2",
                    "--dino-out-dim",
                    "64",
                ]
                .map(String::from),
            );
            a
        },
        &[1, 2],
    );
}

#[test]
fn a_run_killed_between_checkpoints_loses_only_the_epochs_since_the_last() {
    // Checkpoints only after the measured epochs (2 and 4) and the last: killed after epoch
    // 2, the run loses epoch 3 (its log line waits for the next checkpoint) and trains it
    // again, with the augmentation producer starting mid-run.
    let args = |out: &Path| {
        let mut a = pair_args(out, "4");
        let at = a
            .iter()
            .position(|a| a == "--checkpoint-seconds")
            .expect("flag");
        a[at + 1] = "1000".into();
        a.extend(["--monitor-every", "2", "--monitor-sample", "64"].map(String::from));
        a
    };
    kill_resume_and_compare(args, &[1, 2, 3, 4]);
}

/// Writes `n` Fashion-MNIST test images as PNG files under `dir`, in class folders when
/// `classes` is set.
fn write_pngs(dir: &Path, start: usize, n: usize, classes: bool) {
    let data = sslmem::data::inputs::load_dataset("fashion-mnist:test").expect("dataset");
    for i in start..start + n {
        let img = data.get(i).expect("image");
        let sub = if classes {
            dir.join(format!("class-{}", data.label(i).expect("label")))
        } else {
            dir.to_path_buf()
        };
        std::fs::create_dir_all(&sub).expect("mkdir");
        image::GrayImage::from_raw(28, 28, img.data)
            .expect("28x28")
            .save(sub.join(format!("{i:05}.png")))
            .expect("png");
    }
}

#[test]
fn folders_of_images_train_and_score() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("images");
    write_pngs(&data.join("train"), 0, 300, true);
    write_pngs(&data.join("test"), 300, 100, true);
    let out = dir.path().join("bundle");
    let data_s = data.to_str().expect("utf8");
    let o = train_bin()
        .args([
            "--device",
            "cpu",
            "--threads",
            "2",
            "pair",
            "--dataset",
            data_s,
        ])
        .args(["--out", out.to_str().expect("utf8"), "--epochs", "1"])
        .args(["--batch-size", "32", "--lr", "0.1"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&out);
    assert_eq!(m["training"]["dataset"], data_s);
    assert_eq!(m["split"]["dataset"], format!("{data_s}:train"));
    assert_eq!(m["split"]["size"], 300);
    // Normalisation computed from the training images, not a named dataset's constants.
    let mean = m["input"]["mean"][0].as_f64().expect("mean");
    assert!(
        mean > 0.1 && mean < 0.5 && (mean - 0.2860).abs() > 1e-4,
        "{mean}"
    );
    for r in m["training"]["runs"].as_array().expect("runs") {
        let acc = r["eval"]["linear_probe_accuracy"].as_f64().expect("probe");
        assert!(acc > 0.2, "class folders are the labels: {acc}");
    }

    // Example i of the split is the i-th file in path order, as `sslmem score DIR` sees it.
    let cand = split_first(&m, "candidate");
    let files = sslmem::data::inputs::image_files(&data.join("train")).expect("files");
    let o = common::run(&[
        "score",
        "--bundle",
        out.to_str().expect("utf8"),
        "--pairs",
        "4",
        files[cand].to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let s: Value = serde_json::from_str(common::stdout(&o).trim()).expect("json");
    assert!(s["score"].as_f64().expect("score").is_finite());

    // An unlabelled folder trains and exports; evaluation is skipped, not faked.
    let flat = dir.path().join("flat");
    write_pngs(&flat, 0, 120, false);
    let out2 = dir.path().join("bundle2");
    let o = train_bin()
        .args(["--device", "cpu", "--threads", "2", "pair"])
        .args(["--dataset", flat.to_str().expect("utf8")])
        .args(["--out", out2.to_str().expect("utf8"), "--epochs", "1"])
        .args(["--batch-size", "32"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&out2);
    assert!(m["training"]["runs"][0]["eval"].is_null());
    assert!(m["training"]["raw_pixel_linear_probe_accuracy"].is_null());
    assert_eq!(
        m["split"]["size"], 96,
        "a seeded fifth held out as the test set"
    );

    // The split names its images by fingerprint: the folder audits as it is, and is refused
    // once an image changes, or when the record predates fingerprints (held-out order).
    let sha = m["split"]["data_sha256"].as_str().expect("data_sha256");
    assert_eq!(sha.len(), 64, "{sha}");
    let audit = |tag: &str| {
        common::run(&[
            "audit",
            "--bundle",
            out2.to_str().expect("utf8"),
            "--out",
            dir.path().join(tag).to_str().expect("utf8"),
            "--limit",
            "4",
            "--pairs",
            "2",
        ])
    };
    let o = audit("audit-ok");
    assert!(o.status.success(), "{}", common::stderr(&o));
    let path = sslmem::data::inputs::image_files(&flat).expect("files")[7].clone();
    image::GrayImage::from_pixel(28, 28, image::Luma([200]))
        .save(&path)
        .expect("png");
    let refused = |tag: &str, reason: &str| {
        let o = audit(tag);
        assert!(!o.status.success());
        assert!(
            common::stderr(&o).contains(reason),
            "{}",
            common::stderr(&o)
        );
    };
    refused("audit-changed", "does not hold the images");
    let mut old = manifest(&out2);
    old["split"]
        .as_object_mut()
        .expect("split")
        .remove("data_sha256");
    let text = serde_json::to_string_pretty(&old).expect("json");
    std::fs::write(out2.join("sslmem.json"), text).expect("write");
    refused("audit-old", "predates");

    // A folder of the wrong image size fails before training, naming the file.
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    image::GrayImage::new(32, 32)
        .save(big.join("a.png"))
        .expect("png");
    let o = train_bin()
        .args([
            "--device",
            "cpu",
            "pair",
            "--dataset",
            big.to_str().expect("utf8"),
        ])
        .args(["--out", dir.path().join("x").to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a.png") && err.contains("28x28"), "{err}");
}

fn split_first(m: &Value, set: &str) -> usize {
    m["split"][set][0][0].as_u64().expect("index") as usize
}

#[test]
fn removal_experiment_retrains_f_without_top_or_random_candidates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = dir.path().join("pair");
    let o = train_bin()
        .args(pair_args(&pair, "1"))
        .output()
        .expect("pair");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let audit = dir.path().join("audit");
    let o = common::run(&[
        "audit",
        "--bundle",
        pair.to_str().expect("utf8"),
        "--out",
        audit.to_str().expect("utf8"),
        "--sets",
        "candidate",
        "--pairs",
        "3",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    let out = dir.path().join("removal");
    let scores = audit.join("scores.csv");
    let args = [
        "--device",
        "cpu",
        "--threads",
        "2",
        "removal",
        "--bundle",
        pair.to_str().expect("utf8"),
        "--scores",
        scores.to_str().expect("utf8"),
        "--k",
        "5",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "--out",
        out.to_str().expect("utf8"),
    ];
    let o = train_bin().args(args).output().expect("removal");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("removal.json")).expect("removal.json"),
    )
    .expect("json");
    let runs = r["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 6, "2 seeds x (k = 0, top 5, random 5)");
    // `top` removed exactly the 5 highest-scoring candidates of the audit.
    let mut scored: Vec<(f64, u64)> = std::fs::read_to_string(audit.join("scores.jsonl"))
        .expect("scores")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| {
            (
                v["score"].as_f64().expect("s"),
                v["index"].as_u64().expect("i"),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut top: Vec<u64> = scored[..5].iter().map(|x| x.1).collect();
    top.sort_unstable();
    for run in runs {
        let removed: Vec<u64> = run["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .map(|v| v.as_u64().expect("index"))
            .collect();
        match run["strategy"].as_str() {
            Some("top") => assert_eq!(removed, top),
            Some("random") => assert_eq!(removed.len(), 5),
            _ => assert!(removed.is_empty()),
        }
        assert_eq!(
            run["train_examples"].as_u64(),
            Some(360 - removed.len() as u64)
        );
        let acc = run["linear_probe_accuracy"].as_f64().expect("acc");
        assert!((0.0..=1.0).contains(&acc));
        // Per test image: the probe's verdict (agreeing with the accuracy) and align_f.
        let correct = run["test"]["probe_correct"]
            .as_array()
            .expect("probe_correct");
        let align = run["test"]["align_f"].as_array().expect("align_f");
        assert_eq!((correct.len(), align.len()), (200, 200));
        let right = correct.iter().filter(|v| v.as_bool() == Some(true)).count();
        assert!(
            (right as f64 / 200.0 - acc).abs() < 1e-6,
            "{right} of 200 vs {acc}"
        );
        assert!(align
            .iter()
            .all(|v| v.as_f64().is_some_and(|a| (0.0..=2.0).contains(&a))));
    }
    assert_eq!(r["table"].as_array().map(Vec::len), Some(4));
    // Whole-test-set differences with their interval over the 2 seeds, and both arms'
    // subpopulations.
    let tmr = &r["top_minus_random"][0];
    assert_eq!(tmr["k"], 5);
    assert_eq!(tmr["top_minus_random"].as_array().map(Vec::len), Some(2));
    if let Some(iv) = tmr["interval"].as_object() {
        assert_eq!(iv["n"], 2);
        assert!(iv["ci95"][0].as_f64() <= iv["ci95"][1].as_f64());
    }
    let subs = r["subpopulations"].as_array().expect("subpopulations");
    assert_eq!(subs.len(), 2);
    assert_eq!(
        (subs[0]["arm"].as_str(), subs[1]["arm"].as_str()),
        (Some("top"), Some("random"))
    );
    for sub in subs {
        for seed in sub["seeds"].as_array().expect("seeds") {
            let n = seed["test_images"].as_u64().expect("n");
            assert!(n <= 200);
            if n > 0 {
                assert!(seed["align_f_removed"].as_f64().is_some());
            }
        }
    }
    let png = std::fs::read(out.join("removal.png")).expect("png");
    assert!(image::load_from_memory(&png).is_ok());
    // The findings page's tables of it: the per-seed differences as removal.json has them,
    // and a row per arm of the subpopulations.
    let md = common::findings(&["removal", out.to_str().expect("utf8")]);
    let per_seed: Vec<String> = tmr["top_minus_random"]
        .as_array()
        .expect("d")
        .iter()
        .map(|v| format!("{:.4}", v.as_f64().expect("f64")))
        .collect();
    assert!(
        md.contains(&format!("| 5 | {} |", per_seed.join(", "))),
        "{md}"
    );
    assert!(
        md.contains("| 5 | top |") && md.contains("| 5 | random |"),
        "{md}"
    );

    // Rerunning finds every run done and writes the same summary.
    let before = std::fs::read(out.join("removal.json")).expect("json");
    let o = train_bin().args(args).output().expect("again");
    assert!(o.status.success());
    assert_eq!(
        before,
        std::fs::read(out.join("removal.json")).expect("json")
    );
    // Asked for other epochs, the finished runs are not passed off as them.
    let mut other = args;
    other[other
        .iter()
        .position(|a| *a == "--epochs")
        .expect("--epochs")
        + 1] = "2";
    let o = train_bin().args(other).output().expect("other epochs");
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("retrained with --epochs 1, this command asks for 2"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(
        before,
        std::fs::read(out.join("removal.json")).expect("json")
    );
}

#[test]
fn canaries_are_planted_recorded_monitored_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bundle");
    let mut args = pair_args(&out, "2");
    args.extend(
        [
            "--canaries",
            "6",
            "--canary-kind",
            "noise",
            "--monitor-every",
            "1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let o = train_bin().args(&args).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&out);

    // Recorded: how they were made, their files with hashes, and the three sets.
    let c = &m["split"]["canaries"];
    assert_eq!(c["spec"]["kind"], "noise");
    assert_eq!(c["spec"]["count"], 6);
    let files = c["files"].as_array().expect("files");
    assert_eq!(files.len(), 18);
    for f in files {
        let path = out.join(f["path"].as_str().expect("path"));
        let img = image::open(&path).expect("a PNG in the bundle");
        assert_eq!((img.width(), img.height()), (28, 28));
        let bytes = std::fs::read(&path).expect("read");
        let hash = sslmem::fsutil::sha256_file(&path).expect("hash");
        assert_eq!(f["sha256"].as_str(), Some(hash.as_str()), "{}", bytes.len());
    }
    assert_eq!(c["candidate"], serde_json::json!([[0, 6]]));
    assert_eq!(c["independent"], serde_json::json!([[6, 12]]));
    assert_eq!(c["heldout"], serde_json::json!([[12, 18]]));
    // The synthetic canaries are a function of the seed: the same pixels as made here.
    let again = sslmem::data::canary::make(
        sslmem::data::canary::CanarySpec {
            kind: sslmem::data::canary::CanaryKind::Noise,
            count: 6,
            seed: 0,
            repeats: 1,
            min_distance: Some(0.0),
        },
        1,
        28,
        28,
    )
    .expect("canaries");
    let first = image::open(out.join(files[0]["path"].as_str().expect("path")))
        .expect("png")
        .to_luma8()
        .into_raw();
    assert_eq!(first, again.get(0).expect("0").data);

    // The monitor logged seen-vs-unseen alignment, canaries included, every epoch.
    let log = std::fs::read_to_string(out.join("train-f0.jsonl")).expect("log");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["epoch"].is_u64())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let mem = &l["memorization"];
        for k in ["representation", "projection", "canaries_representation"] {
            let auc = mem[k]["auc"].as_f64().expect("auc");
            assert!((0.0..=1.0).contains(&auc), "{k}: {auc}");
            assert!(mem[k]["align_seen"].as_f64().expect("seen") > 0.0);
        }
    }

    // The audit scores the canary sets apart and evaluates membership.
    let audit = dir.path().join("audit");
    let o = common::run(&[
        "audit",
        "--bundle",
        out.to_str().expect("utf8"),
        "--out",
        audit.to_str().expect("utf8"),
        "--pairs",
        "2",
        "--limit",
        "30",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(audit.join("summary.json")).expect("summary"),
    )
    .expect("json");
    for set in ["canary-candidate", "canary-independent", "canary-heldout"] {
        assert_eq!(s["sets"][set]["count"], 6, "{set}");
    }
    assert_eq!(
        s["params"]["sets"],
        serde_json::json!([
            "candidate",
            "shared",
            "independent",
            "extra",
            "canary-candidate",
            "canary-independent",
            "canary-heldout"
        ])
    );
    let mem = s["membership"].as_array().expect("membership");
    assert_eq!(mem.len(), 2);
    assert_eq!(
        (mem[0]["members"].as_str(), mem[0]["non_members"].as_str()),
        (Some("candidate"), Some("extra"))
    );
    assert_eq!(mem[1]["members"], "canary-candidate");
    for m in mem {
        let auc = m["auc"].as_f64().expect("auc");
        let ci = m["auc_ci95"].as_array().expect("ci");
        let (lo, hi) = (ci[0].as_f64().expect("lo"), ci[1].as_f64().expect("hi"));
        assert!(lo <= auc && auc <= hi, "{m}");
        // Far fewer than 100 non-members: no TPR at 1% FPR is made up.
        for t in m["tpr_at_fpr"].as_array().expect("tpr") {
            assert_eq!(t["reachable"], false);
            assert!(t["tpr"].is_null() && t["threshold"].is_null());
        }
    }
    let check = s["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == "canary-candidate separated from canary-heldout")
        .expect("canary check");
    assert!(check["pass"].is_boolean() && check["auc"].is_f64());
    let rows = std::fs::read_to_string(audit.join("scores.jsonl")).expect("scores");
    assert_eq!(
        rows.lines()
            .filter(|l| l.contains("canary-heldout"))
            .count(),
        6
    );
    let roc = std::fs::read(audit.join("figures").join("roc.png")).expect("roc.png");
    assert!(image::load_from_memory(&roc).is_ok());
    let html = std::fs::read_to_string(audit.join("report.html")).expect("report");
    assert!(html.contains("id=\"fig-roc\"") && html.contains("Membership evaluation"));

    // Asking for canary sets of a bundle without canaries is an error that says so.
    let plain = dir.path().join("plain");
    let o = train_bin()
        .args(pair_args(&plain, "1"))
        .args(["--monitor-every", "0"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::run(&[
        "audit",
        "--bundle",
        plain.to_str().expect("utf8"),
        "--out",
        dir.path().join("a2").to_str().expect("utf8"),
        "--sets",
        "canary-candidate",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("has no canaries"),
        "{}",
        common::stderr(&o)
    );
}

/// As for `sslmem`: every trainer flag reads an `SSLMEM_TRAIN_*` variable with one meaning.
#[test]
fn every_trainer_flag_reads_an_environment_variable_with_one_meaning() {
    let subcommands: [&[&str]; 7] = [
        &["split"],
        &["pair"],
        &["subsample"],
        &["subsample-bundle"],
        &["eval"],
        &["removal"],
        &["bench-epoch"],
    ];
    let n = common::check_flag_environment(train_bin, &subcommands);
    assert!(n > 30, "the help pages were read: {n} variables");
}

#[test]
fn method_flags_come_from_the_registry_and_name_themselves_when_refused() {
    let o = train_bin().args(["pair", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&o.stdout);
    for (flag, default) in [
        ("--temperature", "0.5"),
        ("--ema-base", "0.996"),
        ("--vicreg-sim-weight", "25"),
        ("--vicreg-var-weight", "25"),
        ("--vicreg-cov-weight", "1"),
        ("--barlow-lambda", "0.005"),
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag}: {help}"));
        let entry = &help[at..];
        let entry = &entry[..entry.find("\n\n").unwrap_or(entry.len())];
        assert!(entry.contains(&format!("[default: {default}]")), "{entry}");
    }
    let refused = |extra: &[&str]| {
        let o = train_bin()
            .args(["--device", "cpu", "pair", "--out", "/nonexistent/bundle"])
            .args(extra)
            .output()
            .expect("run");
        assert!(!o.status.success(), "{extra:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = refused(&["--method", "byol", "--temperature", "0.3"]);
    assert!(
        err.contains("--temperature is a hyperparameter of simclr, and the method is byol"),
        "{err}"
    );
    let err = refused(&["--temperature", "-1"]);
    assert!(
        err.contains("--temperature is -1; it must be above 0"),
        "{err}"
    );
    let err = refused(&["--method", "vicreg", "--vicreg-var-weight", "-2"]);
    assert!(
        err.contains("--vicreg-var-weight is -2; it must be 0 or more"),
        "{err}"
    );
}

/// [`pair_args`] on 200 training images instead of 400, at learning rate `lr`.
fn small_pair_args(out: &Path, epochs: &str, lr: &str) -> Vec<String> {
    let mut args = pair_args(out, epochs);
    for (flag, value) in [("--subset", "200"), ("--lr", lr)] {
        let at = args.iter().position(|a| a == flag).expect("flag") + 1;
        args[at] = value.into();
    }
    args
}

#[test]
fn a_collapsing_run_says_so_in_its_log_warning_and_manifest() {
    // Barlow Twins without its redundancy term (lambda 0) is minimised by outputs whose
    // dimensions all say the same thing: it collapses within two epochs here.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bundle");
    let args = small_pair_args(&out, "2", "0.3");
    let o = train_bin()
        .args(&args)
        .args([
            "--method",
            "barlow",
            "--barlow-lambda",
            "0",
            "--monitor-every",
            "1",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("COLLAPSED (representation, projection)"),
        "{err}"
    );
    let m = manifest(&out);
    let runs = m["training"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert!(
            r["collapsed"]
                .as_array()
                .is_some_and(|c| c.iter().any(|o| o == "projection")),
            "{r}"
        );
        let p = &r["spread"]["projection"];
        assert_eq!(p["dims"], 64);
        assert!(p["effective_rank"].as_f64().is_some_and(|e| e < 6.4), "{p}");
    }
    let log = std::fs::read_to_string(out.join("train-f0.jsonl")).expect("log");
    let measured: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("memorization").is_some())
        .collect();
    assert!(!measured.is_empty());
    assert!(measured
        .iter()
        .any(|l| l["collapsed"] == serde_json::json!(["representation", "projection"])));
    assert!(measured[0]["memorization"]["projection_spread"]["effective_rank"].is_f64());
    // `eval` on the bundle with its verdicts and spreads removed judges it the same again.
    let o = eval_without(&out, m.clone(), &["collapsed", "spread"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("COLLAPSED"), "{err}");
    assert_eq!(
        manifest(&out)["training"]["runs"],
        m["training"]["runs"],
        "the same verdicts and spreads as training recorded"
    );

    // SimCLR for as long: its outputs spread out, nothing is flagged.
    let healthy = dir.path().join("healthy");
    let args = small_pair_args(&healthy, "2", "0.1");
    let o = train_bin()
        .args(&args)
        .args(["--method", "simclr", "--monitor-every", "1"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("COLLAPSED"), "{err}");
    let m = manifest(&healthy);
    for r in m["training"]["runs"].as_array().expect("runs") {
        assert!(r.get("collapsed").is_none(), "{r}");
        assert!(
            r["spread"]["projection"]["effective_rank"]
                .as_f64()
                .is_some_and(|e| e > 6.4),
            "{r}"
        );
    }
}

/// Every method of the registry (BYOL and SimSiam with batch norm in their heads, as their
/// recipes) trains a pair for one epoch on a tiny set with canaries, and its bundle audits
/// with every field a method row of docs/reproduction.md reads: the sets, the checks, both
/// membership tests, typicality and LayerMem.
#[test]
fn every_method_trains_a_pair_with_canaries_that_audits_completely() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (method, extra) in [
        ("simclr", &["--temperature", "0.2"][..]),
        ("simsiam", &["--projector-bn"][..]),
        ("byol", &["--projector-bn"][..]),
        ("vicreg", &[][..]),
        ("barlow", &["--barlow-lambda", "0.02"][..]),
        ("dino", &["--augment", "byol", "--local-crops", "2"][..]),
    ] {
        let out = dir.path().join(method);
        let mut args = small_pair_args(&out, "1", "0.1");
        args.extend(
            [
                "--method",
                method,
                "--canaries",
                "4",
                "--canary-kind",
                "patterns",
                "--monitor-every",
                "1",
                "--score-output",
                "projection",
            ]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
        );
        let o = train_bin().args(&args).output().expect("run");
        assert!(
            o.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let m = manifest(&out);
        assert_eq!(m["training"]["config"]["method"]["method"], method);
        assert_eq!(
            m["architecture"]["projector_bn"].as_bool().unwrap_or(false),
            extra.contains(&"--projector-bn"),
            "{method}"
        );
        let audit = dir.path().join(format!("{method}-audit"));
        let o = common::run(&[
            "audit",
            "--bundle",
            out.to_str().expect("utf8"),
            "--out",
            audit.to_str().expect("utf8"),
            "--pairs",
            "2",
            "--limit",
            "20",
        ]);
        assert!(o.status.success(), "{method}: {}", common::stderr(&o));
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(audit.join("summary.json")).expect("summary"),
        )
        .expect("json");
        for set in [
            "candidate",
            "shared",
            "independent",
            "extra",
            "canary-candidate",
        ] {
            assert!(s["sets"][set]["mean"].is_f64(), "{method}: {set}");
        }
        assert!(
            s["checks"].as_array().is_some_and(|c| c.len() >= 5),
            "{method}"
        );
        assert_eq!(
            s["membership"].as_array().map(Vec::len),
            Some(2),
            "{method}"
        );
        assert!(s["typicality"]["candidate"]["rho"].is_f64(), "{method}");
        let layers = s["layer_mem"]["layers"].as_array().expect("layer_mem");
        assert_eq!(
            layers.last().and_then(|l| l["layer"].as_str()),
            Some("projection"),
            "{method}"
        );
        let run = &m["training"]["runs"][0];
        assert!(run["eval"]["linear_probe_accuracy"].is_f64(), "{method}");
        assert!(run["parity_max_rel_err"].as_f64() < Some(1e-4), "{method}");
    }

    // The method matrix of docs/reproduction.md, made from these audits: a row per method,
    // each with its canary AUC and every check counted.
    let specs: Vec<String> = ["simclr", "simsiam", "byol", "vicreg", "barlow"]
        .iter()
        .map(|m| format!("{m}={}", dir.path().join(format!("{m}-audit")).display()))
        .collect();
    let table = common::findings(
        &[
            &["methods"][..],
            &specs.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    for method in ["simclr", "simsiam", "byol", "vicreg", "barlow"] {
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("{method}-audit/summary.json")))
                .expect("summary"),
        )
        .expect("json");
        let canary = s["membership"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["members"] == "canary-candidate"))
            .and_then(|x| x["auc"].as_f64())
            .expect("canary auc");
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {method} |")))
            .unwrap_or_else(|| panic!("no row for {method} in\n{table}"));
        assert!(row.contains(&format!("| {canary:.3} [")), "{row}");
        let checks = s["checks"].as_array().expect("checks").len();
        assert!(row.ends_with(&format!("/{checks} |")), "{row}");
        let bundle = format!("- {method}: `{}`", dir.path().join(method).display());
        assert!(table.contains(&bundle), "{table}");
    }

    // A bundle folder that kept only its training logs (its manifest lost) still gives f0's
    // probe, from the evaluation line training appends to f0's log.
    let logs_only = dir.path().join("vicreg-logs");
    std::fs::create_dir(&logs_only).expect("mkdir");
    for log in ["train-f0.jsonl", "train-g0.jsonl"] {
        std::fs::copy(dir.path().join("vicreg").join(log), logs_only.join(log)).expect("copy");
    }
    let f0 = &manifest(&dir.path().join("vicreg"))["training"]["runs"][0];
    assert!(f0["side"] == "f" && f0["index"] == 0, "{f0}");
    let probe = f0["eval"]["linear_probe_accuracy"].as_f64().expect("probe");
    let spec = format!(
        "logs={}@{}",
        dir.path().join("vicreg-audit").display(),
        logs_only.display()
    );
    let table = common::findings(&["methods", &spec]);
    let row = table
        .lines()
        .find(|l| l.starts_with("| logs |"))
        .unwrap_or_else(|| panic!("no row in\n{table}"));
    assert!(row.contains(&format!("| {probe:.3} (–) |")), "{row}");
    // The rank column: f0's last monitor line's, marked as the monitor's.
    let rank = std::fs::read_to_string(logs_only.join("train-f0.jsonl"))
        .expect("log")
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|l| l["memorization"]["projection_spread"]["effective_rank"].as_f64())
        .expect("a monitor line with the projection's spread");
    assert!(row.contains(&format!("| {rank:.1} (monitor) |")), "{row}");
}

#[test]
fn a_vit_pair_trains_with_mae_exports_its_tokens_and_audits_each_sub_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mae");
    let mut args = small_pair_args(&out, "1", "0.001");
    args.extend(
        [
            "--arch",
            "vit-tiny-28x28x1",
            "--method",
            "mae",
            "--optimizer",
            "adamw",
            "--score-output",
            "tokens",
            "--canaries",
            "4",
            "--canary-kind",
            "patterns",
            "--monitor-every",
            "1",
        ]
        .map(String::from),
    );
    let o = train_bin().args(&args).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&out);
    assert_eq!(m["training"]["config"]["method"]["mask_ratio"], 0.75);
    assert_eq!(m["architecture"]["vit"]["patch"], 7);
    assert_eq!(m["representation"]["output"], "tokens");
    assert_eq!(m["representation"]["pooling"], "flatten");
    assert_eq!(
        m["representation"]["layers"].as_array().map(Vec::len),
        Some(12)
    );
    for run in m["training"]["runs"].as_array().expect("runs") {
        assert!(run["parity_max_rel_err"].as_f64() < Some(1e-4), "{run}");
    }
    let audit = dir.path().join("audit");
    let o = common::run(&[
        "audit",
        "--bundle",
        out.to_str().expect("utf8"),
        "--out",
        audit.to_str().expect("utf8"),
        "--pairs",
        "2",
        "--limit",
        "12",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(audit.join("summary.json")).expect("summary"),
    )
    .expect("json");
    let layers: Vec<&str> = s["layer_mem"]["layers"]
        .as_array()
        .expect("layer_mem")
        .iter()
        .filter_map(|l| l["layer"].as_str())
        .collect();
    assert_eq!(layers.len(), 13);
    assert_eq!(
        (layers[0], layers[1], layers[12]),
        ("block1.attn", "block1.mlp", "tokens")
    );
    assert!(s["sets"]["canary-candidate"]["mean"].is_f64());

    // MAE on a ResNet, and tokens of a ResNet, are refused with the reason.
    for (extra, why) in [
        (&["--method", "mae"][..], "needs a Vision Transformer"),
        (&["--score-output", "tokens"][..], "has no tokens"),
        (
            &[
                "--arch",
                "vit-tiny-28x28x1",
                "--method",
                "mae",
                "--score-output",
                "projection",
            ][..],
            "does not train the projector",
        ),
    ] {
        let mut args = small_pair_args(&dir.path().join("refused"), "1", "0.1");
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = train_bin().args(&args).output().expect("run");
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{err}");
    }
}

/// DINO on the ViT: its local crops (14x14 of 28, a 2x2 patch grid) go through the same
/// encoder with resized position embeddings; the exported student matches tch at the full
/// size and is scored on its class token.
#[test]
fn a_vit_pair_trains_with_dino_local_crops_and_exports_the_student() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("dino");
    let mut args = small_pair_args(&out, "1", "0.001");
    args.extend(
        [
            "--arch",
            "vit-tiny-28x28x1",
            "--method",
            "dino",
            "--augment",
            "byol",
            "--local-crops",
            "2",
            "--optimizer",
            "adamw",
            "--score-output",
            "representation",
        ]
        .map(String::from),
    );
    let o = train_bin().args(&args).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&out);
    let method = &m["training"]["config"]["method"];
    assert_eq!(method["method"], "dino");
    assert_eq!(method["local_crops"], 2.0);
    assert_eq!(method["teacher_temp"], 0.04);
    for run in m["training"]["runs"].as_array().expect("runs") {
        assert!(run["parity_max_rel_err"].as_f64() < Some(1e-4), "{run}");
    }
    let log = std::fs::read_to_string(out.join("train-f0.jsonl")).expect("log");
    let first: Value = serde_json::from_str(log.lines().next().expect("a line")).expect("json");
    assert!(
        first["loss"].as_f64().is_some_and(f64::is_finite),
        "{first}"
    );
}
