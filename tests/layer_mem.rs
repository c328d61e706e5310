//! LayerMem in the audit (issue 20): on a random pair with layer outputs, each layer's
//! LayerMem and ΔLayerMem in summary.json equal a hand computation from `sslmem score
//! --output LAYER` runs over the same members, with the same views; a bundle without layers
//! has none.

mod common;

use std::path::Path;

use common::{findings, random_bundle, run, stderr, stdout};
use serde_json::Value;

const MEMBERS: &str = "fashion-mnist:train[0:12]";

fn audit(bundle: &Path, out: &Path) -> Value {
    let o = run(&[
        "audit",
        "--bundle",
        bundle.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--pairs",
        "3",
        "--members",
        MEMBERS,
        "--non-members",
        "fashion-mnist:test[0:12]",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
        .expect("json")
}

/// The members' ratio scores on `output`, by `sslmem score`.
fn ratios(bundle: &Path, output: &str) -> Vec<f64> {
    let o = run(&[
        "score",
        "--bundle",
        bundle.to_str().expect("utf8"),
        "--output",
        output,
        "--pairs",
        "3",
        MEMBERS,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["score_ratio"].as_f64().expect("score_ratio")
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

#[test]
fn layer_mem_is_the_mean_ratio_score_of_each_layer_as_sslmem_score_gives_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "pair", &["--layers"]);
    check_layer_mem(
        &bundle,
        &dir.path().join("audit"),
        &["layer1", "layer2", "layer3", "layer4", "representation"],
    );

    // An output the bundle does not list is refused, naming the ones it has.
    let o = run(&[
        "score",
        "--bundle",
        bundle.to_str().expect("utf8"),
        "--output",
        "layer9",
        MEMBERS,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("layers: layer1, layer2, layer3, layer4"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn layer_mem_of_a_vit_scores_each_blocks_attention_and_mlp_tokens_flattened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(
        dir.path(),
        "vit",
        &["--layers", "--arch", "vit-tiny-28x28x1"],
    );
    let mut names: Vec<String> = (1..=6)
        .flat_map(|i| [format!("block{i}.attn"), format!("block{i}.mlp")])
        .collect();
    names.push("representation".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    check_layer_mem(&bundle, &dir.path().join("audit"), &names);
}

/// The audit of `bundle` into `out` has LayerMem rows for `names`, in order, each the mean of
/// the ratio scores `sslmem score --output` gives on that layer, Δ paired with the row
/// before, and its figure and report section.
fn check_layer_mem(bundle: &Path, out: &Path, names_wanted: &[&str]) {
    let s = audit(bundle, out);
    let m = &s["layer_mem"];
    assert_eq!(m["set"], "candidate");
    assert_eq!(m["images"], 12);
    let layers = m["layers"].as_array().expect("layers");
    let names: Vec<&str> = layers
        .iter()
        .map(|r| r["layer"].as_str().expect("name"))
        .collect();
    assert_eq!(names, names_wanted);
    let mut before: Option<Vec<f64>> = None;
    for r in layers {
        let name = r["layer"].as_str().expect("name");
        let x = ratios(bundle, name);
        assert_eq!(x.len(), 12);
        let got = r["layer_mem"]["mean"].as_f64().expect("mean");
        assert!(
            (got - mean(&x)).abs() < 1e-9,
            "{name}: {got} vs {}",
            mean(&x)
        );
        match before {
            None => assert!(r["delta"].is_null(), "{name}"),
            Some(b) => {
                let d: Vec<f64> = x.iter().zip(&b).map(|(a, b)| a - b).collect();
                let got = r["delta"]["mean"].as_f64().expect("delta");
                assert!((got - mean(&d)).abs() < 1e-9, "{name}: Δ {got}");
                let ci = &r["delta"]["ci95"];
                assert!(ci[0].as_f64() <= Some(got) && Some(got) <= ci[1].as_f64());
            }
        }
        before = Some(x);
    }
    let png = std::fs::read(out.join("figures/layer-mem.png")).expect("figure");
    assert!(image::load_from_memory(&png).is_ok());
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(html.contains("LayerMem by layer") && html.contains("fig-layer-mem"));

    // The findings page's table of it (scripts/findings.py layermem): a row per layer, in order.
    let md = findings(&["layermem", &format!("pair={}", out.display())]);
    let rows: Vec<&str> = md
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(" | ").next())
        .filter(|c| *c != "layer" && !c.starts_with("---"))
        .collect();
    assert_eq!(rows, names_wanted, "{md}");
}

#[test]
fn a_bundle_without_layers_has_no_layer_mem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "pair", &[]);
    let s = audit(&bundle, &dir.path().join("audit"));
    assert!(s.get("layer_mem").is_none());
    assert!(!dir.path().join("audit/figures/layer-mem.png").exists());
}
