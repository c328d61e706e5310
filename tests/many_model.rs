//! The many-model estimator end to end on real encoders (seeded untrained ones, real ONNX
//! Runtime, real Fashion-MNIST): a bundle of 4 encoders with a subsample design is audited
//! over its pool, and each image's in and out alignments are checked against one-model
//! audits of each encoder alone (a hand computation from independent runs); the pair inside
//! it (`sslmem bundle split-pair`) audits as an SSLMem pair with the design's halves as its
//! candidate and independent sets.

mod common;

use std::path::{Path, PathBuf};

use common::{random_bundle, run, stderr};
use serde_json::{json, Value};
use sslmem::data::subsample::SubsampleRecord;

const POOL: usize = 40;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn rows(out: &Path) -> Vec<Value> {
    read(out, "scores.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// A many-model bundle of the 4 `f` encoders of a random bundle, over the first `POOL`
/// Fashion-MNIST training images (and as many test images), with the design of seed 5.
fn many_model_bundle(dir: &Path) -> (PathBuf, SubsampleRecord) {
    let b = random_bundle(dir, "mm", &["--models", "4", "--seed", "11"]);
    let design = SubsampleRecord::make("fashion-mnist", POOL, 5, 4).expect("design");
    let mut m: Value = serde_json::from_str(&read(&b, "sslmem.json")).expect("manifest");
    let o = m.as_object_mut().expect("object");
    o.remove("g");
    o.insert(
        "subsample".into(),
        serde_json::to_value(&design).expect("json"),
    );
    o.insert(
        "training".into(),
        json!({"dataset": "fashion-mnist", "subset": [POOL, POOL],
               "raw_pixel_linear_probe_accuracy": null}),
    );
    std::fs::write(b.join("sslmem.json"), m.to_string()).expect("write");
    for k in 0..4 {
        std::fs::remove_file(b.join(format!("g{k}.onnx"))).expect("rm g");
    }
    (b, design)
}

/// `(input, align_f)` of a one-model audit of encoder `e` alone over the pool's images.
fn alone(dir: &Path, mm: &Path, e: usize) -> Vec<(String, f64)> {
    let b = dir.join(format!("alone{e}"));
    std::fs::create_dir_all(&b).expect("mkdir");
    let mut m: Value = serde_json::from_str(&read(mm, "sslmem.json")).expect("manifest");
    let f = m["f"][e].clone();
    std::fs::copy(
        mm.join(f["path"].as_str().expect("path")),
        b.join(f["path"].as_str().expect("path")),
    )
    .expect("copy");
    let o = m.as_object_mut().expect("object");
    o.remove("subsample");
    o.insert("f".into(), json!([f]));
    std::fs::write(b.join("sslmem.json"), m.to_string()).expect("write");
    let out = dir.join(format!("alone{e}-audit"));
    let pool = format!("fashion-mnist:train[0:{POOL}]");
    let o = run(&[
        "audit",
        "--bundle",
        b.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--pairs",
        "3",
        &pool,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    rows(&out)
        .iter()
        .map(|r| {
            (
                r["input"].as_str().expect("input").to_string(),
                r["align_f"].as_f64().expect("align"),
            )
        })
        .collect()
}

#[test]
fn every_pool_image_is_scored_by_the_encoders_that_saw_it_against_those_that_did_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mm, design) = many_model_bundle(dir.path());
    let out = dir.path().join("audit");
    let o = run(&[
        "audit",
        "--bundle",
        mm.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--pairs",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        printed.contains("many-model estimate: 4 encoders"),
        "{printed}"
    );
    assert!(
        !printed.contains("note:"),
        "no split-audit caveat on a pool: {printed}"
    );

    let got = rows(&out);
    assert_eq!(got.len(), POOL);
    let per: Vec<Vec<(String, f64)>> = (0..4).map(|e| alone(dir.path(), &mm, e)).collect();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["set"], "pool");
        let index = r["index"].as_u64().expect("index") as usize;
        assert_eq!(r["input"], format!("fashion-mnist:train#{index}"));
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for (e, enc) in per.iter().enumerate() {
            assert_eq!(enc[i].0, r["input"].as_str().expect("input"));
            if design.is_member(e, index) {
                inside.push(enc[i].1);
            } else {
                outside.push(enc[i].1);
            }
        }
        assert_eq!((inside.len(), outside.len()), (2, 2), "each image in half");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (a_f, a_g) = (
            r["align_f"].as_f64().expect("f"),
            r["align_g"].as_f64().expect("g"),
        );
        assert!(
            (a_f - mean(&inside)).abs() < 1e-9,
            "{index}: in {a_f} vs {inside:?}"
        );
        assert!(
            (a_g - mean(&outside)).abs() < 1e-9,
            "{index}: out {a_g} vs {outside:?}"
        );
        assert!((r["score"].as_f64().expect("score") - (a_g - a_f)).abs() < 1e-12);
    }

    let s: Value = serde_json::from_str(&read(&out, "summary.json")).expect("summary");
    let mm_s = &s["many_model"];
    assert_eq!(
        (mm_s["models"].as_u64(), mm_s["scored"].as_u64()),
        (Some(4), Some(POOL as u64))
    );
    let evals = mm_s["per_encoder"].as_array().expect("per encoder");
    assert_eq!(evals.len(), 4);
    for (e, ev) in evals.iter().enumerate() {
        assert_eq!(ev["encoder"], e);
        assert_eq!(ev["n_members"], POOL / 2);
        assert_eq!(ev["n_non_members"], POOL / 2);
    }
    assert!(read(&out, "report.html").contains("Many-model estimate"));

    // --sets does not apply to a pool.
    let o = run(&[
        "audit",
        "--bundle",
        mm.to_str().expect("utf8"),
        "--out",
        dir.path().join("sets").to_str().expect("utf8"),
        "--sets",
        "candidate",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no split sets"), "{}", stderr(&o));
}

#[test]
fn the_pair_of_a_split_audits_with_its_halves_as_candidate_and_independent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mm, design) = many_model_bundle(dir.path());
    let pair = dir.path().join("pair1");
    let o = run(&[
        "bundle",
        "split-pair",
        "--bundle",
        mm.to_str().expect("utf8"),
        "--split",
        "1",
        "--out",
        pair.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: Value = serde_json::from_str(&read(&pair, "sslmem.json")).expect("manifest");
    let src: Value = serde_json::from_str(&read(&mm, "sslmem.json")).expect("manifest");
    assert_eq!(m["f"][0]["sha256"], src["f"][2]["sha256"]);
    assert_eq!(m["g"][0]["sha256"], src["f"][3]["sha256"]);
    assert_eq!(
        m["split"]["candidate"],
        serde_json::to_value(&design.members[2]).expect("j")
    );
    assert_eq!(
        m["split"]["independent"],
        serde_json::to_value(&design.members[3]).expect("j")
    );
    assert_eq!(m["split"]["extra"], json!([[0, POOL]]));
    assert!(m.get("subsample").is_none());

    let out = dir.path().join("pair-audit");
    let o = run(&[
        "audit",
        "--bundle",
        pair.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--pairs",
        "2",
        "--limit",
        "5",
        "--reference",
        "set:extra",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sets: Vec<String> = rows(&out)
        .iter()
        .map(|r| r["set"].as_str().expect("set").to_string())
        .collect();
    assert!(sets.contains(&"candidate".to_string()) && sets.contains(&"extra".to_string()));
    assert!(!sets.contains(&"shared".to_string()));

    // Not a many-model bundle, or no such split: refused.
    let o = run(&[
        "bundle",
        "split-pair",
        "--bundle",
        pair.to_str().expect("utf8"),
        "--out",
        dir.path().join("x").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a many-model bundle"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "bundle",
        "split-pair",
        "--bundle",
        mm.to_str().expect("utf8"),
        "--split",
        "2",
        "--out",
        dir.path().join("y").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has 2 split(s)"), "{}", stderr(&o));
}
