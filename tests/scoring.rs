//! Scoring through real ONNX Runtime sessions on bundles written by the ONNX writer.

mod common;

use std::path::Path;

use common::{random_bundle, reference_forward, run, stderr, stdout};
use proptest::prelude::*;
use sslmem::arch::ArchSpec;
use sslmem::augment::{AugmentSpec, GaussianBlur, RandomSolarize};
use sslmem::engine::{Engine, QueueOptions, ViewMaker};
use sslmem::pixels::SourceImage;
use sslmem::rng::Rng;
use sslmem::runtime::RuntimeOptions;
use sslmem::score::{Distance, RepNorm, ScoreOptions, ViewMode};

fn images(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Vec<SourceImage> {
    let mut rng = Rng::from_seed(seed);
    (0..n)
        .map(|_| {
            SourceImage::new(
                c,
                h,
                w,
                (0..c * h * w).map(|_| rng.below(256) as u8).collect(),
            )
            .expect("image")
        })
        .collect()
}

fn load(dir: &Path) -> Engine {
    load_batched(dir, 256)
}

/// An engine whose forward passes hold at most `batch` views.
fn load_batched(dir: &Path, batch: usize) -> Engine {
    let q = QueueOptions {
        max_batch_views: batch,
        ..Default::default()
    };
    Engine::load(dir, &RuntimeOptions::default(), q).expect("bundle loads")
}

#[test]
fn identical_f_and_g_score_exactly_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = load_batched(
        &random_bundle(dir.path(), "same", &["--same", "--models", "2"]),
        16,
    );
    let imgs = images(6, 1, 30, 26, 1);
    for mode in [ViewMode::AugVsAug, ViewMode::OrigVsAug] {
        for distance in [Distance::L2, Distance::Cosine, Distance::L1] {
            let opts = ScoreOptions {
                pairs: 4,
                mode,
                distance,
                ..Default::default()
            };
            let scores = b.score(&imgs, &opts, &|_| {}).expect("score");
            for s in scores {
                assert_eq!(s.score, 0.0, "{mode:?} {distance:?}");
                assert_eq!(s.score_ratio, 0.0);
                assert_eq!(s.stderr, Some(0.0));
                assert!(
                    s.align_f > 0.0,
                    "augmented views differ, so alignment is positive"
                );
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_batch_size_or_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = random_bundle(dir.path(), "b", &["--arch", "resnet-mini-32x32x3"]);
    let imgs = images(5, 3, 40, 36, 2);
    let score = |imgs: &[SourceImage], batch_size| {
        let opts = ScoreOptions {
            pairs: 3,
            seed: 9,
            ..Default::default()
        };
        load_batched(&path, batch_size)
            .score(imgs, &opts, &|_| {})
            .expect("score")
    };
    let base = score(&imgs, 256);
    assert_eq!(base.len(), imgs.len());
    for bs in [1, 5, 6, 17] {
        let other = score(&imgs, bs);
        assert_eq!(other.len(), imgs.len(), "batch size {bs} lost results");
        for (a, o) in base.iter().zip(&other) {
            // Batch composition may change ONNX Runtime's kernels' summation order slightly.
            assert!(
                (a.score - o.score).abs() < 1e-6 && (a.align_f - o.align_f).abs() < 1e-6,
                "batch size {bs}"
            );
        }
    }
    let reversed: Vec<SourceImage> = imgs.iter().rev().cloned().collect();
    let rev = score(&reversed, 256);
    for (a, r) in base.iter().zip(rev.iter().rev()) {
        assert!((a.score - r.score).abs() < 1e-6);
    }
    let other_seed = {
        let opts = ScoreOptions {
            pairs: 3,
            seed: 10,
            ..Default::default()
        };
        load(&path).score(&imgs, &opts, &|_| {}).expect("score")
    };
    assert_ne!(
        base[0].align_f, other_seed[0].align_f,
        "the seed changes the views"
    );
}

#[test]
fn views_are_identical_across_batches_threads_and_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = load(&random_bundle(dir.path(), "b", &[]));
    let opts = ScoreOptions {
        pairs: 4,
        seed: 3,
        ..Default::default()
    };
    let scorer =
        ViewMaker::new(b.input(), b.bundle().manifest.augment(), &opts).expect("view maker");
    let img = &images(1, 1, 31, 29, 4)[0];
    let n = scorer.views_per_image() * 784;
    let mut a = vec![0f32; n];
    scorer.write_views(img, &mut a);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let b1 = pool.install(|| {
        let mut v = vec![0f32; n];
        scorer.write_views(img, &mut v);
        v
    });
    assert_eq!(a, b1);
    // Two views of the same image differ.
    assert_ne!(a[..784], a[784..2 * 784]);
}

/// Encoders side by side (one single-threaded session per core, the default when each gets a
/// core) and one after the other (a fixed thread count) give the same scores.
#[test]
fn encoders_side_by_side_score_as_encoders_in_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = random_bundle(dir.path(), "b", &[]);
    let imgs = images(6, 1, 28, 28, 3);
    let opts = ScoreOptions {
        pairs: 5,
        ..Default::default()
    };
    let side = Engine::load(&path, &RuntimeOptions::default(), QueueOptions::default())
        .expect("bundle loads");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(side.bundle().side_by_side, cores >= 2);
    let turn = Engine::load(
        &path,
        &RuntimeOptions {
            threads: cores,
            ..Default::default()
        },
        QueueOptions::default(),
    )
    .expect("bundle loads");
    assert!(!turn.bundle().side_by_side);
    let a = side.score(&imgs, &opts, &|_| {}).expect("score");
    let b = turn.score(&imgs, &opts, &|_| {}).expect("score");
    assert_eq!(a.len(), imgs.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.score - y.score).abs() < 1e-6 && (x.align_g - y.align_g).abs() < 1e-6,
            "{x:?} vs {y:?}"
        );
    }
}

#[test]
fn identity_augmentation_gives_zero_alignment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = load(&random_bundle(dir.path(), "b", &["--augment", "none"]));
    let imgs = images(3, 1, 28, 28, 5);
    for mode in [ViewMode::AugVsAug, ViewMode::OrigVsAug] {
        let opts = ScoreOptions {
            pairs: 2,
            mode,
            ..Default::default()
        };
        let scores = b.score(&imgs, &opts, &|_| {}).expect("score");
        for s in scores {
            assert!(s.align_f.abs() < 1e-6 && s.align_g.abs() < 1e-6, "{s:?}");
        }
    }
}

/// `align` on two images against distances computed from the reference forward pass.
#[test]
fn align_matches_reference_distances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = random_bundle(dir.path(), "b", &["--seed", "11"]);
    let b = load(&out);
    let arch = ArchSpec::resnet_mini_28();
    let (wf, wg) = (arch.random_weights(11), arch.random_weights(11 + 1_000_003));
    let imgs = images(2, 1, 28, 28, 6);
    let norm_input = |im: &SourceImage| -> Vec<f32> {
        im.data
            .iter()
            .map(|&v| (f32::from(v) / 255.0 - 0.2860) / 0.3530)
            .collect()
    };
    let (x, y) = (norm_input(&imgs[0]), norm_input(&imgs[1]));
    let d = |w, normalize: bool, l1: bool| {
        let (a, c) = (
            reference_forward(&arch, w, &x).representation,
            reference_forward(&arch, w, &y).representation,
        );
        let n = |v: &[f64]| {
            if normalize {
                v.iter().map(|x| x * x).sum::<f64>().sqrt()
            } else {
                1.0
            }
        };
        let (na, nc) = (n(&a), n(&c));
        let diffs = a.iter().zip(&c).map(|(p, q)| p / na - q / nc);
        if l1 {
            diffs.map(f64::abs).sum::<f64>()
        } else {
            diffs.map(|v| v * v).sum::<f64>().sqrt()
        }
    };
    let pairs = vec![
        (imgs[0].clone(), imgs[1].clone()),
        (imgs[0].clone(), imgs[0].clone()),
    ];
    for (norm, dist, normalize, l1) in [
        (RepNorm::L2, Distance::L2, true, false),
        (RepNorm::None, Distance::L1, false, true),
    ] {
        let r = b.align(&pairs, norm, dist).expect("align");
        let (ef, eg) = (d(&wf, normalize, l1), d(&wg, normalize, l1));
        assert!(
            (r[0].d_f - ef).abs() < 1e-4 * ef.max(1e-3),
            "{} vs {ef}",
            r[0].d_f
        );
        assert!(
            (r[0].d_g.expect("g") - eg).abs() < 1e-4 * eg.max(1e-3),
            "{:?} vs {eg}",
            r[0].d_g
        );
        assert!(
            r[1].d_f.abs() < 1e-9 && r[1].d_g.expect("g").abs() < 1e-9,
            "an image is at distance 0 from itself"
        );
    }
}

#[test]
fn several_encoders_per_side_average() {
    let dir = tempfile::tempdir().expect("tempdir");
    let two = load(&random_bundle(
        dir.path(),
        "two",
        &["--models", "2", "--seed", "4"],
    ));
    let imgs = images(2, 1, 28, 28, 7);
    let opts = ScoreOptions {
        pairs: 1,
        mode: ViewMode::OrigVsAug,
        ..Default::default()
    };
    let s = two.score(&imgs, &opts, &|_| {}).expect("score");
    // The same views through each f's session separately.
    let scorer =
        ViewMaker::new(two.input(), two.bundle().manifest.augment(), &opts).expect("view maker");
    let mut views = vec![0f32; 2 * 784];
    scorer.write_views(&imgs[0], &mut views);
    let mut per_f = Vec::new();
    for enc in &two.bundle().f {
        let r = enc
            .embed(views.clone(), [2, 1, 28, 28], "representation")
            .expect("embed");
        let (a, b) = (r.row(0).to_vec(), r.row(1).to_vec());
        per_f.push(sslmem::score::distance(&a, &b, RepNorm::L2, Distance::L2));
    }
    let want = (per_f[0] + per_f[1]) / 2.0;
    assert!(
        (s[0].align_f - want).abs() < 1e-9,
        "{} vs {want}",
        s[0].align_f
    );
    assert_ne!(per_f[0], per_f[1], "the two f encoders differ");
}

#[test]
fn score_command_on_real_fashion_mnist_writes_jsonl_and_csv() {
    if !sslmem::data::fashion_mnist_dir()
        .join("t10k-images-idx3-ubyte.gz")
        .is_file()
    {
        panic!("Fashion-MNIST missing: run scripts/setup.sh --datasets");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let b = random_bundle(dir.path(), "b", &[]);
    let out = dir.path().join("s.jsonl");
    let o = run(&[
        "score",
        "--bundle",
        b.to_str().expect("utf8"),
        "--pairs",
        "3",
        "--set-normalize",
        "range,max",
        "--out",
        out.to_str().expect("utf8"),
        "fashion-mnist:test[0:12]",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).expect("output");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 12);
    let keys: Vec<&str> = lines[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "input",
            "label",
            "align_f",
            "align_g",
            "score",
            "score_ratio",
            "score_range",
            "score_max",
            "stderr",
            "ci95",
            "pairs"
        ]
    );
    assert_eq!(lines[0]["input"], "fashion-mnist:test#0");
    assert_eq!(
        lines[0]["label"], 9,
        "the first Fashion-MNIST test image is an ankle boot"
    );
    for l in &lines {
        let (f, g, s) = (
            l["align_f"].as_f64().expect("f"),
            l["align_g"].as_f64().expect("g"),
            l["score"].as_f64().expect("s"),
        );
        assert!((s - (g - f)).abs() < 1e-12);
        let ci = l["ci95"].as_array().expect("ci");
        assert!(ci[0].as_f64().expect("lo") <= s && s <= ci[1].as_f64().expect("hi"));
        assert!(
            (0.0..=2.0).contains(&f) && (0.0..=2.0).contains(&g),
            "normalised l2 distances lie in [0, 2]"
        );
    }
    let o = run(&[
        "score",
        "--bundle",
        b.to_str().expect("utf8"),
        "--pairs",
        "3",
        "--format",
        "csv",
        "fashion-mnist:test[0:12]",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = stdout(&o);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "input,label,align_f,align_g,score,score_ratio,stderr,ci95_low,ci95_high,pairs"
    );
    assert_eq!(rows.len(), 13);
    // The CSV carries the same numbers as the JSON lines.
    let first: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(
        first[4].parse::<f64>().expect("score"),
        lines[0]["score"].as_f64().expect("score")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn augmented_views_are_deterministic_and_in_range(seed in any::<u64>(), view in 0u64..1000, h in 8usize..40, w in 8usize..40, c in prop_oneof![Just(1usize), Just(3usize)]) {
        let mut spec = AugmentSpec::simclr();
        spec.transforms.push(GaussianBlur { kernel_size: Some(3), sigma: [0.1, 2.0], p: 0.5 }.into());
        spec.transforms.push(RandomSolarize { threshold: 0.5, p: 0.2 }.into());
        let aug = sslmem::augment::Augmenter::new(spec, 16, 12).expect("valid");
        let img = images(1, c, h, w, seed)[0].to_planes();
        let a = aug.view(&img, seed, 1, view);
        prop_assert_eq!(&a, &aug.view(&img, seed, 1, view));
        prop_assert_eq!((a.channels, a.height, a.width), (c, 16, 12));
        prop_assert!(a.data.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)));
    }

    #[test]
    fn distances_are_non_negative_and_symmetric(a in prop::collection::vec(-10f32..10.0, 1..32), seed in any::<u64>()) {
        let mut rng = Rng::from_seed(seed);
        let b: Vec<f32> = a.iter().map(|_| rng.uniform(-10.0, 10.0) as f32).collect();
        for norm in [RepNorm::L2, RepNorm::None] {
            for d in [Distance::L2, Distance::Cosine, Distance::L1] {
                let x = sslmem::score::distance(&a, &b, norm, d);
                prop_assert!(x >= -1e-12, "{x}");
                prop_assert!((x - sslmem::score::distance(&b, &a, norm, d)).abs() < 1e-9);
                prop_assert!(sslmem::score::distance(&a, &a, norm, d).abs() < 1e-9);
                if norm == RepNorm::L2 && d == Distance::L2 {
                    prop_assert!(x <= 2.0 + 1e-9);
                }
            }
        }
    }

    #[test]
    fn equal_sides_give_zero_and_score_is_the_mean_difference(d in prop::collection::vec(0f64..2.0, 1..20), shift in -0.5f64..0.5) {
        let z = sslmem::score::estimate(&d, &d);
        prop_assert_eq!(z.score, 0.0);
        let g: Vec<f64> = d.iter().map(|v| v + shift).collect();
        let s = sslmem::score::estimate(&d, &g);
        prop_assert!((s.score - shift).abs() < 1e-9);
        prop_assert!(s.stderr.is_none_or(|se| se < 1e-9), "a constant difference has no spread");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes, and valid PNGs with bytes flipped or cut, never panic the decoder.
    #[test]
    fn decoding_garbage_returns_an_error_not_a_panic(
        junk in prop::collection::vec(any::<u8>(), 0..2048),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let limits = sslmem::pixels::DecodeLimits::default();
        let _ = sslmem::pixels::decode(&junk, 1, limits);
        let mut png = Vec::new();
        image::GrayImage::from_fn(20, 17, |x, y| image::Luma([(x * 13 + y * 7) as u8]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        for (i, v) in flips {
            let at = i.index(png.len());
            png[at] = v;
        }
        let end = cut.index(png.len() + 1);
        for channels in [1, 3] {
            if let Ok(img) = sslmem::pixels::decode(&png[..end], channels, limits) {
                prop_assert_eq!(img.data.len(), channels * img.height * img.width);
            }
        }
    }
}

/// Alpha is dropped, not composited: an RGBA file scores exactly as its RGB, and a grey one
/// with alpha as its grey, however transparent (docs/scoring.md#inputs).
#[test]
fn an_alpha_channel_is_dropped_and_scores_as_the_image_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rgb = image::RgbImage::from_fn(36, 30, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
    });
    let rgba = image::RgbaImage::from_fn(36, 30, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        image::Rgba([r, g, b, ((x * y) % 256) as u8])
    });
    let grey = image::DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
    let grey_alpha = image::GrayAlphaImage::from_fn(36, 30, |x, y| {
        image::LumaA([grey.get_pixel(x, y).0[0], (x * 7) as u8])
    });
    let path = |n: &str| dir.path().join(n);
    rgb.save(path("rgb.png")).expect("png");
    rgba.save(path("rgba.png")).expect("png");
    grey.save(path("l.png")).expect("png");
    grey_alpha.save(path("la.png")).expect("png");
    let scores = |bundle: &Path, files: [&str; 2]| -> Vec<serde_json::Value> {
        let files = files.map(|f| path(f).display().to_string());
        let mut args = vec![
            "score",
            "--bundle",
            bundle.to_str().expect("utf8"),
            "--pairs",
            "3",
        ];
        args.extend(files.iter().map(String::as_str));
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
                v.as_object_mut().expect("object").remove("input");
                v
            })
            .collect()
    };
    let rgb_bundle = random_bundle(dir.path(), "rgb", &["--arch", "resnet-mini-32x32x3"]);
    let grey_bundle = random_bundle(dir.path(), "grey", &[]);
    for (bundle, pair) in [
        (&rgb_bundle, ["rgb.png", "rgba.png"]),
        (&grey_bundle, ["rgb.png", "rgba.png"]),
        (&grey_bundle, ["l.png", "la.png"]),
        (&rgb_bundle, ["l.png", "la.png"]),
    ] {
        let s = scores(bundle, pair);
        assert_eq!(s[0], s[1], "{pair:?}");
    }
}
