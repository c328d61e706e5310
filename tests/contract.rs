//! Encoders exported the ways people export them (`tests/cases/`, one folder per public bug
//! report; its README says what should happen): each case's expected behaviour is an assertion
//! here, through the real command line on real ONNX Runtime sessions.

mod common;

use std::path::{Path, PathBuf};

use common::{run, stderr, stdout};
use serde_json::Value;

fn case(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("cases")
        .join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// `sslmem bundle create` with the same model as `f` and `g` (allowed: these cases are about
/// the encoder contract, and an exact 0 score shows both sides ran the same numbers).
fn create(out: &Path, model: &Path, extra: &[&str]) -> std::process::Output {
    let base = [
        "bundle",
        "create",
        "--out",
        s(out),
        "--f",
        s(model),
        "--g",
        s(model),
        "--allow-identical-encoders",
    ];
    let has_norm = extra.contains(&"--mean");
    let norm: &[&str] = if has_norm {
        &[]
    } else {
        &["--mean", "0.5", "--std", "0.5"]
    };
    run(&[&base[..], norm, extra].concat())
}

/// Scores the case's sample image and returns the result line.
fn score_sample(bundle: &Path, sample: &Path) -> Value {
    let o = run(&["score", "--bundle", s(bundle), "--pairs", "4", s(sample)]);
    assert!(o.status.success(), "score: {}", stderr(&o));
    let line = stdout(&o);
    let v: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert!(v["score"].is_number(), "{v}");
    v
}

fn manifest(bundle: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(bundle.join("sslmem.json")).expect("manifest"))
        .expect("json")
}

/// A refused create leaves nothing: no folder, no partial folder beside it.
fn assert_nothing_left(dir: &Path, out: &Path) {
    assert!(!out.exists(), "{} was left behind", out.display());
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn case_06_a_fixed_batch_axis_is_refused_naming_the_fix_and_leaving_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("b");
    let o = create(&out, &case("06-fixed-batch/fixed_batch1.onnx"), &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("batch axis is fixed at 1") && e.contains("dynamic"),
        "{e}"
    );
    assert_nothing_left(dir.path(), &out);
}

#[test]
fn case_06_a_reshape_that_drops_the_batch_is_refused_at_create_and_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = case("06-fixed-batch/baked_reshape.onnx");
    let out = dir.path().join("b");
    let o = create(&out, &model, &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("returned 1 row(s) for 2 views"), "{e}");
    assert_nothing_left(dir.path(), &out);

    // A bundle written by hand around it is refused when loaded, by every command.
    let hand = dir.path().join("hand");
    std::fs::create_dir(&hand).expect("mkdir");
    std::fs::copy(&model, hand.join("f0.onnx")).expect("copy");
    let sha = sslmem::fsutil::sha256_file(&hand.join("f0.onnx")).expect("hash");
    let m = serde_json::json!({
        "format": "sslmem-bundle/1",
        "input": {"name": "input", "channels": 1, "height": 28, "width": 28, "mean": [0.5], "std": [0.5]},
        "representation": {"output": "representation"},
        "f": [{"path": "f0.onnx", "sha256": sha}],
        "g": [{"path": "f0.onnx", "sha256": sha}],
    });
    std::fs::write(hand.join("sslmem.json"), m.to_string()).expect("write");
    let sample = case("06-fixed-batch/sample.png");
    for args in [
        vec!["score", "--bundle", s(&hand), s(&sample)],
        vec!["align", "--bundle", s(&hand), s(&sample), s(&sample)],
        vec!["inspect", "--bundle", s(&hand)],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("returned 1 row(s) for 2 views"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn case_07_float16_and_uint8_encoders_are_scored_through_casts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = case("07-fp16-uint8/sample.png");
    for (model, extra, element) in [
        ("fp16_io.onnx", &[][..], Some("float16")),
        ("fp16_keep_io.onnx", &[][..], None),
        ("fp16_out.onnx", &[][..], None),
        (
            "uint8_in.onnx",
            &["--mean", "0", "--std", "0.00392156862745098"][..],
            Some("uint8"),
        ),
    ] {
        let out = dir.path().join(model);
        let o = create(&out, &case(&format!("07-fp16-uint8/{model}")), extra);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        assert_eq!(
            manifest(&out)["input"]["element"].as_str(),
            element,
            "{model}"
        );
        let v = score_sample(&out, &sample);
        // f and g are the same model: the score is exactly 0 and the alignment is real.
        assert_eq!(v["score"].as_f64(), Some(0.0), "{model}: {v}");
        assert!(
            v["align_f"].as_f64().is_some_and(|a| a > 0.0),
            "{model}: {v}"
        );
    }
}

#[test]
fn case_08_external_data_is_copied_hashed_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("b");
    let o = create(&out, &case("08-external-data/enc.onnx"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    for side in ["f", "g"] {
        let data = &m[side][0]["external_data"][0];
        assert_eq!(data["path"], format!("{side}0.onnx.data"), "{m}");
        assert!(out.join(format!("{side}0.onnx.data")).is_file());
    }
    score_sample(&out, &case("08-external-data/sample.png"));
    // The data file is under the hash check: a changed one is refused.
    let mut bytes = std::fs::read(out.join("g0.onnx.data")).expect("read");
    bytes[0] ^= 1;
    std::fs::write(out.join("g0.onnx.data"), bytes).expect("write");
    let o = run(&["inspect", "--bundle", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sha256"), "{}", stderr(&o));

    // Without its data file the model cannot be created, and nothing is left behind.
    let lone = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        case("08-external-data/enc.onnx"),
        lone.path().join("enc.onnx"),
    )
    .expect("copy");
    let target = tempfile::tempdir().expect("tempdir");
    let out = target.path().join("b");
    let o = create(&out, &lone.path().join("enc.onnx"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_nothing_left(target.path(), &out);
    // A retry into the same folder works once the data is there.
    std::fs::copy(
        case("08-external-data/enc.onnx.data"),
        lone.path().join("enc.onnx.data"),
    )
    .expect("copy");
    let o = create(&out, &lone.path().join("enc.onnx"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn case_09_all_dynamic_inputs_take_the_channels_from_the_normalisation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = case("09-all-dynamic/vit_like.onnx");
    let out = dir.path().join("b");
    let o = create(
        &out,
        &model,
        &[
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.5,0.5,0.5",
            "--height",
            "28",
            "--width",
            "28",
            "--output",
            "pooler_output",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(manifest(&out)["input"]["channels"], 3);
    score_sample(&out, &case("09-all-dynamic/sample.png"));
    // --channels says it outright, and one mean/std value then serves every channel.
    let out = dir.path().join("c");
    let o = create(
        &out,
        &model,
        &[
            "--channels",
            "3",
            "--mean",
            "0.5",
            "--std",
            "0.5",
            "--height",
            "28",
            "--width",
            "28",
            "--output",
            "pooler_output",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        manifest(&out)["input"]["mean"],
        serde_json::json!([0.5, 0.5, 0.5])
    );
    // Without either, one channel is assumed; the refusal says so and names the user's folder.
    let out = dir.path().join("d");
    let o = create(
        &out,
        &model,
        &[
            "--height",
            "28",
            "--width",
            "28",
            "--output",
            "pooler_output",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("--channels N") && e.contains("1 channel(s) were assumed"),
        "{e}"
    );
    assert!(!e.contains(".partial-"), "names the temporary folder: {e}");
    assert!(!out.exists());
}

#[test]
fn case_10_channels_last_inputs_are_detected_and_scored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = case("10-channels-last/sample.png");
    for (model, extra) in [
        ("nhwc_grey_28.onnx", &[][..]),
        (
            "nhwc_rgb_32.onnx",
            &["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"][..],
        ),
    ] {
        let out = dir.path().join(model);
        let o = create(&out, &case(&format!("10-channels-last/{model}")), extra);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        assert_eq!(manifest(&out)["input"]["layout"], "nhwc", "{model}");
        score_sample(&out, &sample);
    }
}

#[test]
fn case_11_token_outputs_need_an_explicit_pooling_and_layers_are_not_guessed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = case("11-token-outputs/mae_tokens.onnx");
    let sample = case("11-token-outputs/sample.png");
    let out = dir.path().join("b");
    let o = create(&out, &model, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--pooling"), "{}", stderr(&o));
    assert_nothing_left(dir.path(), &out);
    for pooling in ["cls", "mean", "flatten"] {
        let out = dir.path().join(pooling);
        let o = create(&out, &model, &["--pooling", pooling]);
        assert!(o.status.success(), "{pooling}: {}", stderr(&o));
        assert_eq!(manifest(&out)["representation"]["pooling"], pooling);
        score_sample(&out, &sample);
    }
    let out = dir.path().join("vit");
    let o = create(
        &out,
        &case("11-token-outputs/vit_outputs.onnx"),
        &["--output", "pooler_output"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest(&out);
    assert!(
        m["representation"].get("layers").is_none(),
        "layernorm_out is not a layer: {m}"
    );
}
