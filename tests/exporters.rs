//! Encoders made by the tools people use: PyTorch's `torch.onnx.export` (the TorchScript and
//! the dynamo exporters, with and without dynamic axes and external data), a float16 model and
//! a channels-last graph (`tests/exporters/export.py`). Each becomes a bundle or is refused as
//! the contract says, and what `sslmem align` measures equals what PyTorch computes.
//!
//! Needs the PyTorch that `scripts/setup.sh --train` installs; the test says so and skips
//! without it, unless `SSLMEM_REQUIRE_TORCH_EXPORT=1` (the test command sets it) makes that a
//! failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, stderr, stdout};
use serde_json::Value;

fn torch_python() -> Option<PathBuf> {
    let home = sslmem::runtime::sslmem_home().join("torch");
    std::fs::read_dir(&home).ok()?.flatten().find_map(|e| {
        let p = e.path().join("bin").join("python");
        p.is_file().then_some(p)
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// Two different 28x28 greyscale PNGs and two different RGB ones (whose channels differ, so
/// that a channels-last input read as channels-first gives other numbers).
fn images(dir: &Path) -> [PathBuf; 4] {
    let paths = ["a.png", "b.png", "ra.png", "rb.png"].map(|n| dir.join(n));
    for (k, p) in paths[..2].iter().enumerate() {
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            image::Luma([((x * 9 + y * (3 + 5 * k as u32)) % 256) as u8])
        });
        img.save(p).expect("png");
    }
    for (k, p) in paths[2..].iter().enumerate() {
        let k = k as u32;
        let img = image::RgbImage::from_fn(28, 28, |x, y| {
            image::Rgb([
                ((x * 9 + k * 40) % 256) as u8,
                ((y * 7 + x * k) % 256) as u8,
                ((x * y + 13 * k) % 256) as u8,
            ])
        });
        img.save(p).expect("png");
    }
    paths
}

#[test]
fn models_from_torch_onnx_export_are_bundled_or_refused_and_match_pytorch() {
    let Some(python) = torch_python() else {
        assert!(
            std::env::var_os("SSLMEM_REQUIRE_TORCH_EXPORT").is_none(),
            "PyTorch is not installed: run scripts/setup.sh --train"
        );
        eprintln!("skipped: PyTorch is not installed (scripts/setup.sh --train)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let [a, b, ra, rb] = images(dir.path());
    let models = dir.path().join("models");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exporters/export.py");
    let o = Command::new(&python)
        .args([s(&script), s(&models), s(&a), s(&b), s(&ra), s(&rb)])
        .output()
        .expect("python");
    assert!(o.status.success(), "export.py: {}", stderr(&o));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(models.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let want = expected["distance"].as_f64().expect("distance");
    assert!(want > 0.01, "the two images differ: {want}");

    let fixed = dir.path().join("fixed");
    let model = models.join("legacy_fixed.onnx");
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&fixed),
        "--f",
        s(&model),
        "--g",
        s(&model),
        "--mean",
        "0.5",
        "--std",
        "0.5",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("batch axis is fixed at 1"),
        "{}",
        stderr(&o)
    );
    assert!(!fixed.exists());

    // Relative tolerance: ONNX Runtime's fused kernels and PyTorch's differ in the last bits of
    // float32 (the trainer's own export check allows 1e-4 too); float16 keeps ~3 digits.
    for (name, tol) in [
        ("legacy_dynamic.onnx", 1e-4),
        ("dynamo_dynamic.onnx", 1e-4),
        ("dynamo_external.onnx", 1e-4),
        ("fp16.onnx", 2e-2),
        ("nhwc.onnx", 1e-4),
    ] {
        let (d_f, d_g) =
            bundle_and_align(&models.join(name), &dir.path().join(name), "0.5", [&a, &b]);
        assert!(
            (d_f - want).abs() <= tol * want.max(1.0),
            "{name}: sslmem {d_f}, PyTorch {want}"
        );
        assert_eq!(d_f, d_g, "{name}: f and g are the same model");
    }

    // Channels last with three channels: the transpose at the session's boundary matters.
    let want = expected["distance_rgb"].as_f64().expect("distance_rgb");
    let out = dir.path().join("nhwc_rgb");
    let (got, _) = bundle_and_align(
        &models.join("nhwc_rgb.onnx"),
        &out,
        "0.5,0.5,0.5",
        [&ra, &rb],
    );
    assert!(
        (got - want).abs() <= 1e-4 * want.max(1.0),
        "nhwc_rgb: sslmem {got}, PyTorch {want}"
    );
}

/// `bundle create` with `model` as both `f` and `g` (normalisation `norm` for mean and std),
/// then `sslmem align` of one image pair: `(d_f, d_g)`.
fn bundle_and_align(model: &Path, out: &Path, norm: &str, [a, b]: [&Path; 2]) -> (f64, f64) {
    let name = model.display();
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(out),
        "--f",
        s(model),
        "--g",
        s(model),
        "--allow-identical-encoders",
        "--mean",
        norm,
        "--std",
        norm,
    ]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let o = run(&["align", "--bundle", s(out), s(a), s(b)]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json line");
    (
        v["d_f"].as_f64().expect("d_f"),
        v["d_g"].as_f64().expect("d_g"),
    )
}

/// The export snippet of docs/bundle.md ("Bundles from elsewhere"), as written there.
fn documented_export_snippet() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bundle.md"))
        .expect("docs/bundle.md");
    let section = doc
        .split("## Bundles from elsewhere")
        .nth(1)
        .expect("the section");
    let code = section
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a python block in the section");
    code.to_string()
}

#[test]
fn the_export_snippet_of_the_docs_runs_without_warnings_and_makes_a_bundle() {
    let snippet = documented_export_snippet();
    assert!(
        snippet.contains("dynamic_shapes") && !snippet.contains("dynamic_axes"),
        "{snippet}"
    );
    let Some(python) = torch_python() else {
        assert!(
            std::env::var_os("SSLMEM_REQUIRE_TORCH_EXPORT").is_none(),
            "PyTorch is not installed: run scripts/setup.sh --train"
        );
        eprintln!("skipped: PyTorch is not installed (scripts/setup.sh --train)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The two encoders the snippet expects the reader to have: 3x32x32 images -> 16 numbers,
    // their forward's argument not named `input` (the snippet must not depend on it).
    let prelude = r#"
import torch

class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8, 16)

    def forward(self, images):
        return self.fc(torch.relu(self.conv(images)).mean(dim=(2, 3)))

torch.manual_seed(0)
f_encoder = Encoder()
g_encoder = Encoder()
"#;
    let script = dir.path().join("export.py");
    std::fs::write(&script, format!("{prelude}\n{snippet}\n")).expect("write");
    let o = Command::new(&python)
        .arg(s(&script))
        .current_dir(dir.path())
        .output()
        .expect("python");
    let err = stderr(&o);
    assert!(o.status.success(), "the snippet failed: {err}");
    // torch.onnx's own warning about `dynamic_axes` under dynamo, or any other about the
    // arguments the snippet passes (torch's internal FutureWarnings are not the snippet's).
    assert!(
        !err.contains("dynamic_axes") && !err.contains("UserWarning"),
        "the snippet warns: {err}"
    );
    let out = dir.path().join("bundle");
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&out),
        "--f",
        s(&dir.path().join("f0.onnx")),
        "--g",
        s(&dir.path().join("g0.onnx")),
        "--mean",
        "0.5",
        "--std",
        "0.25",
    ]);
    assert!(o.status.success(), "bundle create: {}", stderr(&o));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sslmem.json")).expect("manifest"))
            .expect("json");
    assert_eq!(
        (&m["input"]["channels"], &m["input"]["height"]),
        (&serde_json::json!(3), &serde_json::json!(32))
    );
    // Batches of other sizes than the example's 2 (6 views): the batch axis is dynamic.
    let [_, _, ra, _] = images(dir.path());
    let o = run(&["score", "--bundle", s(&out), "--pairs", "3", s(&ra)]);
    assert!(o.status.success(), "score: {}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json line");
    assert!(v["score"].as_f64().is_some_and(f64::is_finite), "{v}");
}
