//! The command line on bad input, bad bundles and a missing runtime: clear errors, the
//! other inputs still scored, the right exit status, never a panic.

mod common;

use std::fs;
use std::path::Path;

use common::{bin, random_bundle, run, stderr, stdout};
use serde_json::Value;

fn png(path: &Path, w: u32, h: u32, rgb: bool) {
    if rgb {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        })
        .save(path)
        .expect("png");
    } else {
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 31 + y * 17) % 256) as u8]))
            .save(path)
            .expect("png");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn no_panic(o: &std::process::Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "the program panicked: {e}");
}

#[test]
fn bad_images_fail_alone_and_the_exit_status_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let imgs = dir.path().join("imgs");
    fs::create_dir(&imgs).expect("mkdir");
    png(&imgs.join("a_good.png"), 28, 28, false);
    png(&imgs.join("b_good_rgb_large.png"), 64, 48, true);
    fs::write(imgs.join("c_garbage.png"), b"definitely not a png").expect("write");
    let full = fs::read(imgs.join("a_good.png")).expect("read");
    fs::write(imgs.join("d_truncated.png"), &full[..full.len() / 2]).expect("write");
    fs::write(imgs.join("e_zero.pgm"), b"P5\n0 0\n255\n").expect("write");
    png(&imgs.join("f_huge.png"), 300, 300, false);

    let o = run(&[
        "score",
        "--bundle",
        s(&b),
        "--pairs",
        "2",
        "--max-pixels",
        "10000",
        s(&imgs),
    ]);
    no_panic(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "some inputs failed: {}",
        stderr(&o)
    );
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let scored: Vec<&str> = lines
        .iter()
        .map(|l| l["input"].as_str().expect("input"))
        .collect();
    assert_eq!(scored.len(), 2, "{scored:?}");
    assert!(scored[0].ends_with("a_good.png") && scored[1].ends_with("b_good_rgb_large.png"));
    let err = stderr(&o);
    for name in [
        "c_garbage.png",
        "d_truncated.png",
        "e_zero.pgm",
        "f_huge.png",
    ] {
        assert!(err.contains(name), "no error names {name}: {err}");
    }
    assert!(err.contains("more than the limit"), "{err}");
    assert!(err.contains("4 of 6 inputs could not be scored"), "{err}");

    // All good: exit 0.
    let o = run(&[
        "score",
        "--bundle",
        s(&b),
        "--pairs",
        "2",
        s(&imgs.join("a_good.png")),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_parameters_are_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let img = dir.path().join("a.png");
    png(&img, 28, 28, false);
    for (args, needle) in [
        (vec!["--pairs", "0"], "pairs"),
        (vec!["--batch-size", "0"], "batch-size"),
        (vec!["--mode", "sideways"], "invalid value"),
        (vec!["--distance", "l3"], "invalid value"),
    ] {
        let mut all = vec!["score", "--bundle", s(&b)];
        all.extend(args);
        all.push(s(&img));
        let o = run(&all);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{all:?}");
        assert!(stderr(&o).contains(needle), "{all:?}: {}", stderr(&o));
    }
    let o = run(&["score", "--bundle", s(&b), "fashion-mnist:test[20:10]"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("outside"), "{}", stderr(&o));
    let o = run(&["score", "--bundle", s(&b), "no-such-input"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a file, a folder, or a dataset"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn flags_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let img = dir.path().join("a.png");
    png(&img, 28, 28, false);
    let o = bin()
        .args(["score", s(&img)])
        .env("SSLMEM_BUNDLE", &b)
        .env("SSLMEM_PAIRS", "3")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["pairs"], 3);
}

#[test]
fn broken_bundles_get_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("a.png");
    png(&img, 28, 28, false);
    let check = |bundle: &Path, needle: &str| {
        let o = run(&["score", "--bundle", s(bundle), s(&img)]);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(e.contains(needle), "expected '{needle}' in: {e}");
    };

    check(&dir.path().join("nowhere"), "nowhere a model bundle?");

    let b = random_bundle(dir.path(), "hash", &[]);
    let mut bytes = fs::read(b.join("g0.onnx")).expect("read");
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(b.join("g0.onnx"), bytes).expect("write");
    check(&b, "g0.onnx: sha256 is");

    let b = random_bundle(dir.path(), "missing", &[]);
    fs::remove_file(b.join("f0.onnx")).expect("rm");
    check(&b, "f0.onnx: listed in the manifest but missing");

    let b = random_bundle(dir.path(), "json", &[]);
    fs::write(b.join("sslmem.json"), "{ not json").expect("write");
    check(&b, "invalid manifest");

    let b = random_bundle(dir.path(), "format", &[]);
    let m = fs::read_to_string(b.join("sslmem.json"))
        .expect("read")
        .replace("sslmem-bundle/1", "sslmem-bundle/9");
    fs::write(b.join("sslmem.json"), m).expect("write");
    check(&b, "expected 'sslmem-bundle/1'");

    // g from another architecture (3 channels): the interface check names the file.
    let b = random_bundle(dir.path(), "mixed", &[]);
    let other = random_bundle(dir.path(), "rgb", &["--arch", "resnet-mini-32x32x3"]);
    fs::copy(other.join("g0.onnx"), b.join("g0.onnx")).expect("copy");
    let hash = sslmem::fsutil::sha256_file(&b.join("g0.onnx")).expect("hash");
    let mut m: Value =
        serde_json::from_str(&fs::read_to_string(b.join("sslmem.json")).expect("read"))
            .expect("json");
    m["g"][0]["sha256"] = Value::String(hash);
    fs::write(b.join("sslmem.json"), m.to_string()).expect("write");
    check(&b, "g0.onnx: model input shape");

    // A file that is not ONNX at all, with a correct hash.
    let b = random_bundle(dir.path(), "notonnx", &[]);
    fs::write(b.join("f0.onnx"), b"garbage").expect("write");
    let hash = sslmem::fsutil::sha256_file(&b.join("f0.onnx")).expect("hash");
    let mut m: Value =
        serde_json::from_str(&fs::read_to_string(b.join("sslmem.json")).expect("read"))
            .expect("json");
    m["f"][0]["sha256"] = Value::String(hash);
    fs::write(b.join("sslmem.json"), m.to_string()).expect("write");
    check(&b, "f0.onnx");
}

#[test]
fn a_missing_runtime_library_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let o = bin()
        .args(["inspect", "--bundle", s(&b)])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .expect("run");
    no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("scripts/setup.sh") && e.contains("/nonexistent/libonnxruntime.so"),
        "{e}"
    );
    let o = bin()
        .args(["inspect", "--bundle", s(&b)])
        .env("SSLMEM_HOME", dir.path())
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("run `scripts/setup.sh`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_reports_manifest_encoders_and_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &["--models", "2", "--layers"]);
    let o = run(&["inspect", "--bundle", s(&b)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["encoders"].as_array().expect("encoders").len(), 4);
    assert_eq!(
        v["encoders"][0]["input"]["shape"],
        serde_json::json!([null, 1, 28, 28])
    );
    assert_eq!(v["runtime"]["provider"], "cpu");
    assert!(v["runtime"]["library"]
        .as_str()
        .expect("library")
        .contains("libonnxruntime.so.1.31.1"));
    assert_eq!(
        v["manifest"]["representation"]["layers"]
            .as_array()
            .expect("layers")
            .len(),
        4
    );
}

#[test]
fn bundle_create_wraps_foreign_onnx_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Stand-ins for models exported elsewhere: ONNX files outside any bundle.
    let src = random_bundle(
        dir.path(),
        "src",
        &["--arch", "resnet-mini-32x32x3", "--models", "2"],
    );
    let out = dir.path().join("created");
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&out),
        "--f",
        s(&src.join("f0.onnx")),
        "--f",
        s(&src.join("f1.onnx")),
        "--g",
        s(&src.join("g0.onnx")),
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--augment",
        "authors",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: Value =
        serde_json::from_str(&fs::read_to_string(out.join("sslmem.json")).expect("manifest"))
            .expect("json");
    assert_eq!(m["input"]["channels"], 3);
    assert_eq!(m["input"]["height"], 32);
    assert_eq!(m["representation"]["output"], "representation");
    // The list of transforms; the authors' jitter is its third.
    assert_eq!(m["augment"][2]["type"], "color_jitter");
    assert_eq!(m["augment"][2]["brightness"], 0.8);
    assert_eq!(m["f"].as_array().expect("f").len(), 2);
    let img = dir.path().join("c.png");
    png(&img, 40, 40, true);
    let o = run(&["score", "--bundle", s(&out), "--pairs", "2", s(&img)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A wrong number of mean values (one value serves every channel, as torchvision's
    // Normalize broadcasts it; two for three channels do not), and an existing bundle, are
    // refused.
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&dir.path().join("x")),
        "--f",
        s(&src.join("f0.onnx")),
        "--g",
        s(&src.join("g0.onnx")),
        "--mean",
        "0.5,0.4",
        "--std",
        "0.25,0.25",
    ]);
    assert_eq!(o.status.code(), Some(2));
    // In terms of the flags the user gave, not of a manifest they never wrote.
    let e = stderr(&o);
    assert!(
        e.contains("--mean has 2 values")
            && e.contains("the model takes 3 channel(s)")
            && e.contains("give 1 value")
            && !e.contains("sslmem.json"),
        "{e}"
    );
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&dir.path().join("x")),
        "--f",
        s(&src.join("f0.onnx")),
        "--g",
        s(&src.join("g0.onnx")),
        "--mean",
        "0.5",
        "--std",
        "0.25,0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("--std has 2 values") && !e.contains("sslmem.json"),
        "{e}"
    );
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&dir.path().join("x")),
        "--f",
        s(&src.join("f0.onnx")),
        "--g",
        s(&src.join("g0.onnx")),
        "--mean",
        "0.5",
        "--std",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("--std values must be positive") && !e.contains("sslmem.json"),
        "{e}"
    );
    assert!(!dir.path().join("x").exists());
    let o = run(&[
        "bundle",
        "create",
        "--out",
        s(&out),
        "--f",
        s(&src.join("f0.onnx")),
        "--g",
        s(&src.join("g0.onnx")),
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

/// `bundle create` arguments: `--out OUT --f F --g G` and a normalisation.
fn create_args<'a>(out: &'a Path, f: &'a Path, g: &'a Path) -> Vec<&'a str> {
    vec![
        "bundle",
        "create",
        "--out",
        s(out),
        "--f",
        s(f),
        "--g",
        s(g),
        "--mean",
        "0.5",
        "--std",
        "0.5",
    ]
}

#[test]
fn bundle_create_refuses_the_same_model_as_f_and_g_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = random_bundle(dir.path(), "src", &["--models", "2"]);
    let f0 = src.join("f0.onnx");
    // A copy under another name: the same model by its hash, not by its path.
    let copy = dir.path().join("copy-of-f0.onnx");
    fs::copy(&f0, &copy).expect("copy");
    let out = dir.path().join("out");
    for (g, how) in [
        (&f0, "are the same file"),
        (&copy, "have the same contents"),
    ] {
        let o = run(&create_args(&out, &f0, g));
        no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("--f {} and --g {} {how}", s(&f0), s(g)))
                && e.contains("exactly 0")
                && e.contains("--allow-identical-encoders"),
            "{e}"
        );
        assert!(!out.exists(), "a refused bundle leaves nothing");
    }
    // Several encoders per side: one identical pair among them is enough to refuse.
    let (g0, f1) = (src.join("g0.onnx"), src.join("f1.onnx"));
    let mut args = create_args(&out, &f0, &g0);
    args.extend(["--f", s(&f1), "--g", s(&copy)]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("--g {}", s(&copy))),
        "{}",
        stderr(&o)
    );

    // Allowed (flag or environment): built, with a warning, and every score is exactly 0.
    let mut args = create_args(&out, &f0, &copy);
    args.push("--allow-identical-encoders");
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("have the same contents"),
        "{}",
        stderr(&o)
    );
    let by_env = dir.path().join("by-env");
    let o = bin()
        .args(create_args(&by_env, &f0, &f0))
        .env("SSLMEM_BUNDLE_CREATE_ALLOW_IDENTICAL_ENCODERS", "true")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let img = dir.path().join("i.png");
    png(&img, 28, 28, false);
    let o = run(&["score", "--bundle", s(&out), "--pairs", "2", s(&img)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["score"].as_f64(), Some(0.0), "{v}");
    // Loading such a bundle warns, and inspect lists the warning.
    assert!(
        stderr(&o).contains("are the same model") && stderr(&o).contains("f0.onnx"),
        "{}",
        stderr(&o)
    );
    let o = run(&["inspect", "--bundle", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    let warnings = v["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(
        warnings[0].as_str().expect("text").contains("exactly 0"),
        "{v}"
    );
    // Different encoders: no warning.
    let o = run(&["inspect", "--bundle", s(&src)]);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn align_takes_pairs_at_model_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let (a, c, big) = (
        dir.path().join("a.png"),
        dir.path().join("c.png"),
        dir.path().join("big.png"),
    );
    png(&a, 28, 28, false);
    png(&c, 28, 28, true);
    png(&big, 30, 28, false);
    let o = run(&["align", "--bundle", s(&b), s(&a), s(&c), s(&a), s(&a)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["d_f"].as_f64().expect("d_f") > 0.0);
    assert_eq!(lines[1]["d_f"].as_f64(), Some(0.0));
    let o = run(&["align", "--bundle", s(&b), s(&a), s(&big)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not resize"), "{}", stderr(&o));
    let o = run(&["align", "--bundle", s(&b), s(&a), s(&a), s(&c)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pairs"), "{}", stderr(&o));
}

#[test]
fn asking_for_cuda_without_it_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let o = run(&["--device", "cuda", "inspect", "--bundle", s(&b)]);
    no_panic(&o);
    if sslmem::runtime::CUDA_BUILT {
        // On a machine without a GPU the CUDA provider must fail to register, not fall back.
        if o.status.success() {
            assert!(
                stdout(&o).contains("\"provider\": \"cuda\""),
                "{}",
                stdout(&o)
            );
        }
    } else {
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("without the `cuda` feature"),
            "{}",
            stderr(&o)
        );
    }
    // The CPU-only library that the other tests use: no CUDA provider in it. Asking it for
    // CUDA must refuse, name the library, and score nothing (no silent CPU fall-back).
    let cpu_lib = sslmem::runtime::library_path(&sslmem::runtime::RuntimeOptions::default());
    let image = dir.path().join("one.png");
    png(&image, 28, 28, false);
    let out = dir.path().join("cuda.jsonl");
    let o = run(&[
        "--device",
        "cuda",
        "--ort-lib",
        s(&cpu_lib),
        "score",
        "--bundle",
        s(&b),
        "--out",
        s(&out),
        s(&image),
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!out.exists(), "a refused device wrote scores");
    let expected = if sslmem::runtime::CUDA_BUILT {
        "CUDA execution provider did not start with"
    } else {
        "without the `cuda` feature"
    };
    assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    if sslmem::runtime::CUDA_BUILT {
        assert!(stderr(&o).contains(s(&cpu_lib)), "{}", stderr(&o));
    }
    // A folder is not a library: say so rather than "not found".
    let folder = cpu_lib.parent().expect("library folder");
    let o = run(&[
        "--device",
        "cpu",
        "--ort-lib",
        s(folder),
        "inspect",
        "--bundle",
        s(&b),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a folder"), "{}", stderr(&o));
    let o = run(&["--device", "tpu", "inspect", "--bundle", s(&b)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a device"), "{}", stderr(&o));
    let o = run(&["--device", "auto", "inspect", "--bundle", s(&b)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every option of every subcommand can also be set from an environment variable, and a
/// variable means one thing: where two subcommands share one, it is the same flag.
#[test]
fn every_flag_reads_an_environment_variable_with_one_meaning() {
    let subcommands: [&[&str]; 9] = [
        &["score"],
        &["align"],
        &["inspect"],
        &["serve"],
        &["audit"],
        &["audit-merge"],
        &["health"],
        &["bundle", "create"],
        &["bundle", "random"],
    ];
    let n = common::check_flag_environment(common::bin, &subcommands);
    assert!(n > 30, "the help pages were read: {n} variables");
}
