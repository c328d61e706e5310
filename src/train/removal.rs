//! `sslmem-train removal`: the removal experiment (docs/science.md#findings-to-reproduce).
//! The `k` most memorized candidates (by an audit's scores), and separately `k` random
//! candidates drawn with the same class histogram ([`class_matched_pick`]: memorized points
//! are not spread over the classes as random ones are), are removed from `f`'s training
//! data; `f` is retrained with the bundle's recipe, over several seeds, for several `k` (and
//! `k = 0`, nothing removed). Two downstream measures are compared, top minus random, with
//! 95% intervals over seeds and the smallest effect the design could detect:
//! - the linear probe's accuracy on the whole test set;
//! - the *subpopulations* the removed points stand for ([`nearest_training`]): the test
//!   images whose nearest training image (normalised raw pixels, l2) was removed, with the
//!   probe's accuracy and their alignment (`align_f`, the bundle's scored output and
//!   augmentations) under the `f` that lost those neighbours against the `f` of the other arm
//!   that kept them, paired over the same test images.
//!
//! Each run's result is written atomically as it finishes and skipped when rerun, and runs
//! resume from their epoch checkpoints, so a killed experiment continues where it stopped.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::Device;

use super::job::Job;
use super::trainer::{TrainConfig, Trainer};
use crate::audit::figures::{RemovalPoint, RemovalSeries};
use crate::audit::scores::read_csv;
use crate::audit::SplitSet;
use crate::augment::Normalize;
use crate::bundle;
use crate::data::dataset;
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::onnx::ExportOptions;
use crate::rng::Rng;

pub struct RemovalOptions {
    pub bundle: PathBuf,
    pub scores: PathBuf,
    pub ks: Vec<usize>,
    pub seeds: Vec<u64>,
    pub epochs: Option<usize>,
    pub out: PathBuf,
    pub device: Device,
}

/// One retrained `f`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemovalRun {
    /// `top` (most memorized first), `random`, or `none` (k = 0).
    pub strategy: String,
    pub k: usize,
    pub seed: u64,
    pub train_examples: usize,
    pub linear_probe_accuracy: f64,
    pub knn_accuracy: f64,
    /// The epochs f was retrained for (absent from runs made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// The removed examples (indices into the training set).
    pub removed: Vec<usize>,
    /// Per test image, in the test set's order (absent from runs made before it was
    /// measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestOutcomes>,
}

/// What a retrained `f` does on each test image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestOutcomes {
    /// Whether the linear probe classifies it correctly.
    pub probe_correct: Vec<bool>,
    /// Its `align_f` (mean l2 distance between l2-normalised outputs of augmented view
    /// pairs; lower is tighter) under the retrained `f`.
    pub align_f: Vec<f64>,
}

/// View pairs per test image of [`TestOutcomes::align_f`] (seed 0, as an audit's default).
pub const ALIGN_PAIRS: usize = 10;

/// For each test image, the example of `train_idx` nearest to it in normalised raw pixels
/// (squared l2; ties to the first), as an index into the training array.
///
/// Errors: an example cannot be read.
pub fn nearest_training(
    train: &ImageArray,
    train_idx: &[usize],
    test: &ImageArray,
    norm: &Normalize,
) -> Result<Vec<usize>> {
    let x = super::eval::images(train, train_idx, norm, Device::Cpu)?.flatten(1, -1);
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let mut out = Vec::with_capacity(test.len());
    for chunk in test_idx.chunks(256) {
        let q = super::eval::images(test, chunk, norm, Device::Cpu)?.flatten(1, -1);
        // |q - x|^2 = |q|^2 - 2 q.x + |x|^2; |q|^2 does not change the argmin.
        let d = x
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Float)
            - q.matmul(&x.tr()) * 2.0;
        let best = Vec::<i64>::try_from(d.argmin(1, false))
            .map_err(|e| Error::Train(format!("nearest training images: {e}")))?;
        out.extend(best.into_iter().map(|b| train_idx[b as usize]));
    }
    Ok(out)
}

/// Candidate examples with their scores, most memorized first, from an audit's scores.csv
/// (read by its header through the audit's [`crate::audit::scores::ScoreRow`]).
///
/// Errors: the file cannot be read or parsed, lacks the `set`, `index` or `score` column, or
/// has no candidate rows.
pub fn ranked_candidates(scores_csv: &Path) -> Result<Vec<(usize, f64)>> {
    let rows = read_csv(scores_csv, &["set", "index", "score"])?;
    let mut out: Vec<(usize, f64)> = rows
        .iter()
        .filter(|r| r.set == SplitSet::Candidate)
        .map(|r| (r.index, r.score))
        .collect();
    if out.is_empty() {
        return Err(Error::Param(format!(
            "{}: no candidate rows; audit the candidate set first",
            scores_csv.display()
        )));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// The class of each candidate that has one (its `label` column), from an audit's
/// scores.csv.
///
/// Errors: as [`ranked_candidates`].
pub fn candidate_labels(scores_csv: &Path) -> Result<BTreeMap<usize, u8>> {
    Ok(read_csv(scores_csv, &["set", "index", "score"])?
        .iter()
        .filter(|r| r.set == SplitSet::Candidate)
        .filter_map(|r| Some((r.index, r.label?)))
        .collect())
}

/// The random control of removing `top`: as many candidates of each class as `top` has
/// (candidates without a class form one group), each class's drawn uniformly without
/// replacement among all its candidates (the top ones included) from `seed`; sorted.
/// With every candidate in one group this is [`random_pick`] of `top.len()`.
pub fn class_matched_pick(
    candidates: &[(usize, f64)],
    labels: &BTreeMap<usize, u8>,
    top: &[usize],
    seed: u64,
) -> Vec<usize> {
    let mut wanted: BTreeMap<Option<u8>, usize> = BTreeMap::new();
    for i in top {
        *wanted.entry(labels.get(i).copied()).or_default() += 1;
    }
    let mut out = Vec::with_capacity(top.len());
    for (class, &n) in &wanted {
        let of_class: Vec<(usize, f64)> = candidates
            .iter()
            .filter(|c| labels.get(&c.0).copied() == *class)
            .copied()
            .collect();
        let salt = class.map_or(0xFF, u64::from);
        out.extend(random_pick(
            &of_class,
            n,
            seed ^ salt.wrapping_mul(0x9E37_79B9),
        ));
    }
    out.sort_unstable();
    out
}

/// `k` candidates drawn uniformly without replacement from `seed` (sorted).
pub fn random_pick(candidates: &[(usize, f64)], k: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = candidates.iter().map(|c| c.0).collect();
    idx.sort_unstable();
    let mut rng = Rng::from_seed(seed ^ 0x5245_4D4F_5645);
    let k = k.min(idx.len());
    for i in 0..k {
        let j = i + rng.below((idx.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut out = idx[..k].to_vec();
    out.sort_unstable();
    out
}

/// Runs the experiment (or what is left of it) and writes `removal.json` and `removal.png`
/// under `o.out`; returns the summary.
///
/// Errors: the bundle has no recipe, split or dataset; the scores do not belong to it; a `k`
/// is above the candidates scored; a retraining fails; the outputs cannot be written.
pub fn run(o: &RemovalOptions) -> Result<Value> {
    let setup = Setup::load(o)?;
    let runs_dir = o.out.join("runs");
    fs::create_dir_all(&runs_dir).map_err(|e| Error::io(&runs_dir, e))?;
    check_finished_epochs(&o.out, setup.config.epochs)?;
    let plan = plan(&setup.ranked, &setup.labels, &o.ks, &o.seeds);
    let mut results = Vec::new();
    for (n, (strategy, k, seed, removed)) in plan.iter().cloned().enumerate() {
        let name = format!("{strategy}-k{k}-seed{seed}");
        tracing::info!(run = %name, progress = %format!("{}/{}", n + 1, plan.len()), "training f");
        let gone: std::collections::HashSet<usize> = removed.iter().copied().collect();
        let indices: Vec<usize> = setup
            .f_train
            .iter()
            .copied()
            .filter(|i| !gone.contains(i))
            .collect();
        let work = runs_dir.join(&name);
        let job = Job {
            trainer: Trainer {
                config: TrainConfig {
                    seed,
                    ..setup.config.clone()
                },
                data: setup.train(),
                indices: indices.iter().chain(&setup.canaries).copied().collect(),
                workdir: work.clone(),
                device: o.device,
                label: name.clone(),
                monitor: None,
                checkpoint_seconds: 0.0,
            },
            resume: true,
            onnx: work.join("f.onnx"),
            export: ExportOptions {
                layer_outputs: false,
            },
            record: runs_dir.join(format!("{name}.json")),
            test: &setup.tt.test,
            norm: &setup.norm,
            eval: Some((&setup.tt.train, &indices)),
        };
        let planned = removed.clone();
        let r = job.run(|e| {
            let eval = e.eval.as_ref().ok_or_else(|| {
                Error::Train(format!("{name}: the retrained f was not evaluated"))
            })?;
            Ok(RemovalRun {
                strategy,
                k,
                seed,
                train_examples: indices.len(),
                linear_probe_accuracy: eval.linear_probe_accuracy,
                knn_accuracy: eval.knn_accuracy,
                epochs: Some(setup.config.epochs),
                removed,
                test: Some(setup.test_outcomes(e.path, &indices)?),
            })
        })?;
        if r.removed != planned {
            return Err(Error::Param(format!(
                "{}: run {name} removed other examples than this plan does (an experiment \
                 made before the random control was drawn with the top's class histogram?); \
                 choose another --out",
                o.out.display()
            )));
        }
        let _ = fs::remove_dir_all(&work);
        tracing::info!(run = %name, linear_probe = r.linear_probe_accuracy, "done");
        results.push(r);
    }
    let summary = summarize(&results, &setup.nearest, &setup.config, o);
    write_atomic(
        &o.out.join("removal.json"),
        (serde_json::to_string_pretty(&summary).map_err(|e| Error::output("JSON", e))? + "\n")
            .as_bytes(),
    )?;
    let png = crate::audit::figures::removal_png(&series(&results))?;
    write_atomic(&o.out.join("removal.png"), &png)?;
    Ok(summary)
}

/// Refuses an `out` whose finished runs were retrained for other epochs than `epochs`
/// (before anything trains): each run's record says them, or, for records made before they
/// were recorded, the experiment's `removal.json`; a run that says neither is refused too.
///
/// Errors: [`Error::Param`] naming the run, its epochs and the fix.
fn check_finished_epochs(out: &Path, epochs: usize) -> Result<()> {
    let runs = out.join("runs");
    let Ok(entries) = fs::read_dir(&runs) else {
        return Ok(()); // nothing finished yet
    };
    let summary: Option<usize> = fs::read(out.join("removal.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        .and_then(|v| v["epochs"].as_u64())
        .and_then(|e| usize::try_from(e).ok());
    let mut records: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    records.sort();
    for path in records {
        // A record that does not read is retrained over, as the run itself treats it.
        let Some(run) = fs::read(&path)
            .ok()
            .and_then(|t| serde_json::from_slice::<RemovalRun>(&t).ok())
        else {
            continue;
        };
        match run.epochs.or(summary) {
            Some(e) if e == epochs => {}
            Some(e) => {
                return Err(Error::Param(format!(
                    "{}: a finished run ({}) was retrained with --epochs {e}, this command asks \
                     for {epochs}; pass --epochs {e} to finish that experiment, or choose another \
                     --out",
                    out.display(),
                    path.display()
                )))
            }
            None => {
                return Err(Error::Param(format!(
                    "{}: a finished run ({}) does not record its epochs (made by an older \
                     sslmem-train) and there is no removal.json to say them; choose another --out",
                    out.display(),
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// What every retraining shares: the bundle's recipe, its data (canaries appended to the
/// training array when the bundle has them), f's training examples and canaries, and the
/// ranked candidates.
struct Setup {
    config: TrainConfig,
    tt: dataset::TrainTest,
    /// `tt.train` with the bundle's canaries appended (`None`: no canaries).
    with_canaries: Option<ImageArray>,
    f_train: Vec<usize>,
    /// f's canary examples, each repeated as the bundle's recipe did.
    canaries: Vec<usize>,
    ranked: Vec<(usize, f64)>,
    /// The class of each candidate that has one.
    labels: BTreeMap<usize, u8>,
    norm: Normalize,
    /// Each test image's nearest example of f's training set ([`nearest_training`]).
    nearest: Vec<usize>,
    /// The bundle's input, scored output and augmentations (for [`TestOutcomes::align_f`]).
    input: crate::bundle::InputSpec,
    output: String,
    augment: crate::augment::AugmentSpec,
}

impl Setup {
    /// The training array the runs train on.
    fn train(&self) -> &ImageArray {
        self.with_canaries.as_ref().unwrap_or(&self.tt.train)
    }

    /// What the `f` exported at `onnx`, trained on `train_idx`, does on each test image.
    ///
    /// Errors: the model cannot be loaded or run; an image cannot be read or gives a
    /// non-finite output.
    fn test_outcomes(&self, onnx: &Path, train_idx: &[usize]) -> Result<TestOutcomes> {
        let test = &self.tt.test;
        let rep =
            super::eval::exported_engine(onnx, test, &self.norm, crate::onnx::REPRESENTATION)?;
        let probe_correct =
            super::eval::probe_correct(&rep, &self.tt.train, train_idx, test, &self.norm)?;
        let scored = crate::engine::Engine::for_model(
            onnx,
            self.input.clone(),
            &self.output,
            Some(self.augment.clone()),
        )?;
        let images = (0..test.len())
            .map(|i| {
                test.get(i).map_err(|source| Error::Input {
                    input: format!("{} test image {i}", test.name),
                    source,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let opts = crate::score::ScoreOptions {
            pairs: ALIGN_PAIRS,
            ..Default::default()
        };
        let align_f = scored
            .align_views_each(&images, &opts, &|_| {})?
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                a.map(|v| v.align_f).map_err(|source| Error::Input {
                    input: format!("{} test image {i}", test.name),
                    source,
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        Ok(TestOutcomes {
            probe_correct,
            align_f,
        })
    }

    fn load(o: &RemovalOptions) -> Result<Self> {
        let m = bundle::read_manifest(&o.bundle)?;
        let manifest_path = o.bundle.join(bundle::MANIFEST);
        let recorded = m.training.as_ref().and_then(|t| t.config.as_ref());
        let mut config: TrainConfig = match recorded.map(|r| r.typed()) {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(no_recipe(&manifest_path, &e.to_string())),
            None => return Err(no_recipe(&manifest_path, "absent")),
        };
        if let Some(e) = o.epochs {
            config.epochs = e;
        }
        let split = m
            .split
            .as_ref()
            .ok_or_else(|| Error::bundle(&manifest_path, "has no split record"))?;
        let spec = m
            .training_dataset()
            .ok_or_else(|| Error::Param("the bundle records no dataset".into()))?;
        let arch = &config.arch;
        let shape = [arch.in_channels, arch.height, arch.width];
        let tt = dataset::load(spec, Some(shape), m.training_subset())?;
        if tt.train.len() != split.size {
            return Err(Error::Param(format!(
                "{spec} has {} training examples, the split {}",
                tt.train.len(),
                split.size
            )));
        }
        dataset::check_recorded_data(spec, split.data_sha256.as_deref(), &tt)?;
        let ranked = ranked_candidates(&o.scores)?;
        let labels = candidate_labels(&o.scores)?;
        let cand: std::collections::BTreeSet<usize> = split.candidate.iter().collect();
        if let Some((i, _)) = ranked.iter().find(|(i, _)| !cand.contains(i)) {
            return Err(Error::Param(format!(
                "{}: example {i} is not a candidate of this bundle's split; were the scores made with it?",
                o.scores.display()
            )));
        }
        if let Some(&k) = o.ks.iter().find(|&&k| k > ranked.len()) {
            return Err(Error::Param(format!(
                "--k {k}: only {} candidates were scored",
                ranked.len()
            )));
        }
        let norm = Normalize::new(config.mean.clone(), config.std.clone(), arch.in_channels)?;
        // f trained on its canaries too: so does every retraining.
        let (with_canaries, canaries) = match &split.canaries {
            Some(rec) => {
                let c = super::pair::read_canaries(&o.bundle, rec, shape)?;
                let base = tt.train.len();
                (
                    Some(crate::data::canary::append(&tt.train, &c)?),
                    (0..rec.spec.repeats)
                        .flat_map(|_| rec.candidate.iter().map(|j| base + j))
                        .collect(),
                )
            }
            // Without canaries the runs train on `tt.train` itself, not a copy.
            None => (None, Vec::new()),
        };
        let f_train = split.f_train();
        let nearest = nearest_training(&tt.train, &f_train, &tt.test, &norm)?;
        Ok(Setup {
            f_train,
            nearest,
            input: m.input.clone(),
            output: m.representation.output.clone(),
            augment: m.augment(),
            config,
            tt,
            with_canaries,
            canaries,
            ranked,
            labels,
            norm,
        })
    }
}

fn no_recipe(manifest: &Path, why: &str) -> Error {
    Error::bundle(
        manifest,
        format!(
            "no trainer recipe in `training.config` ({why}); was it made by sslmem-train pair?"
        ),
    )
}

/// The runs, in order: per seed, `k = 0` (nothing removed), then for each `k > 0` the top
/// `k` candidates and `k` random ones; each `(strategy, k, seed, removed indices sorted)`.
fn plan(
    ranked: &[(usize, f64)],
    labels: &BTreeMap<usize, u8>,
    ks: &[usize],
    seeds: &[u64],
) -> Vec<(String, usize, u64, Vec<usize>)> {
    let mut plan = Vec::new();
    for &seed in seeds {
        plan.push(("none".into(), 0, seed, Vec::new()));
        for &k in ks.iter().filter(|&&k| k > 0) {
            let mut top: Vec<usize> = ranked[..k].iter().map(|c| c.0).collect();
            top.sort_unstable();
            let random = class_matched_pick(
                ranked,
                labels,
                &top,
                seed.wrapping_mul(1_000_003) ^ k as u64,
            );
            plan.push(("top".into(), k, seed, top));
            plan.push(("random".into(), k, seed, random));
        }
    }
    plan
}

/// Mean and standard deviation of the probe accuracy per (strategy, k); `none` is k = 0 of
/// both curves.
fn series(results: &[RemovalRun]) -> Vec<RemovalSeries> {
    let stat = |xs: &[f64]| {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let sd = if xs.len() > 1 {
            (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        (m, sd)
    };
    let mut ks: Vec<usize> = results.iter().map(|r| r.k).collect();
    ks.sort_unstable();
    ks.dedup();
    ["top", "random"]
        .iter()
        .map(|&s| {
            let pts = ks
                .iter()
                .filter_map(|&k| {
                    let xs: Vec<f64> = results
                        .iter()
                        .filter(|r| {
                            r.k == k && (r.strategy == s || (k == 0 && r.strategy == "none"))
                        })
                        .map(|r| r.linear_probe_accuracy)
                        .collect();
                    (!xs.is_empty()).then(|| {
                        let (mean, sd) = stat(&xs);
                        RemovalPoint {
                            k,
                            mean,
                            sd,
                            seeds: xs.len(),
                        }
                    })
                })
                .collect();
            (s.to_string(), pts)
        })
        .collect()
}

fn summarize(
    results: &[RemovalRun],
    nearest: &[usize],
    config: &TrainConfig,
    o: &RemovalOptions,
) -> Value {
    let table: Vec<Value> = series(results)
        .into_iter()
        .flat_map(|(s, pts)| {
            pts.into_iter().map(move |p| {
                json!({"strategy": s, "k": p.k, "linear_probe_mean": p.mean, "linear_probe_sd": p.sd, "seeds": p.seeds})
            })
        })
        .collect();
    let ks: Vec<usize> = o.ks.iter().copied().filter(|&k| k > 0).collect();
    json!({
        "format": "sslmem-removal/1",
        "bundle": o.bundle.display().to_string(),
        "scores": o.scores.display().to_string(),
        "epochs": config.epochs,
        "random_control": "as many candidates of each class as the top k has, drawn uniformly within each class",
        "subpopulation": "the test images whose nearest training image of f (normalised raw pixels, l2) one arm removed and the other kept; differences are the f that removed them minus the f that kept them, at the same k and seed",
        "align_pairs": ALIGN_PAIRS,
        "recipe": config,
        "table": table,
        "top_minus_random": top_minus_random(results, &ks, &o.seeds),
        "subpopulations": subpopulations(results, nearest, &ks, &o.seeds),
        "runs": results,
    })
}

/// The run of `strategy` at `k` and `seed`, if it finished.
fn find<'a>(
    results: &'a [RemovalRun],
    strategy: &str,
    k: usize,
    seed: u64,
) -> Option<&'a RemovalRun> {
    results
        .iter()
        .find(|r| r.k == k && r.seed == seed && r.strategy == strategy)
}

/// Whole-test-set probe accuracy, top minus random, paired by seed, at each `k`: the
/// differences, their mean and the [`crate::stats::MeanInterval`] over seeds (negative:
/// removing the memorized points hurts more).
fn top_minus_random(results: &[RemovalRun], ks: &[usize], seeds: &[u64]) -> Vec<Value> {
    ks.iter()
        .map(|&k| {
            let d: Vec<f64> = seeds
                .iter()
                .filter_map(|&s| {
                    let acc = |st: &str| find(results, st, k, s).map(|r| r.linear_probe_accuracy);
                    Some(acc("top")? - acc("random")?)
                })
                .collect();
            json!({
                "k": k,
                "top_minus_random": d,
                "mean": (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64),
                "paired_t": crate::stats::one_sample_t(&d),
                "interval": crate::stats::mean_interval(&d),
            })
        })
        .collect()
}

/// The subpopulation measure at each `k`, for each arm (`top`, `random`): per seed, the test
/// images whose nearest training image this arm removed and the other arm kept, the probe's
/// accuracy and mean `align_f` on them under both `f`s, and the differences (removed minus
/// kept) with their interval paired over those images; then the interval of the per-seed
/// mean differences over seeds.
fn subpopulations(
    results: &[RemovalRun],
    nearest: &[usize],
    ks: &[usize],
    seeds: &[u64],
) -> Vec<Value> {
    let mut out = Vec::new();
    for &k in ks {
        for (arm, other) in [("top", "random"), ("random", "top")] {
            let mut per_seed = Vec::new();
            let (mut probe_means, mut align_means) = (Vec::new(), Vec::new());
            for &seed in seeds {
                let (Some(a), Some(b)) =
                    (find(results, arm, k, seed), find(results, other, k, seed))
                else {
                    continue;
                };
                let (Some(ta), Some(tb)) = (&a.test, &b.test) else {
                    continue;
                };
                if ta.probe_correct.len() != nearest.len() || tb.align_f.len() != nearest.len() {
                    continue;
                }
                let removed: std::collections::HashSet<usize> = a.removed.iter().copied().collect();
                let kept: std::collections::HashSet<usize> = b.removed.iter().copied().collect();
                let images: Vec<usize> = (0..nearest.len())
                    .filter(|&t| removed.contains(&nearest[t]) && !kept.contains(&nearest[t]))
                    .collect();
                let mean =
                    |xs: &[f64]| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
                let acc = |t: &TestOutcomes| {
                    mean(
                        &images
                            .iter()
                            .map(|&i| f64::from(u8::from(t.probe_correct[i])))
                            .collect::<Vec<_>>(),
                    )
                };
                let align = |t: &TestOutcomes| {
                    mean(&images.iter().map(|&i| t.align_f[i]).collect::<Vec<_>>())
                };
                let probe_d: Vec<f64> = images
                    .iter()
                    .map(|&i| {
                        f64::from(u8::from(ta.probe_correct[i]))
                            - f64::from(u8::from(tb.probe_correct[i]))
                    })
                    .collect();
                let align_d: Vec<f64> = images
                    .iter()
                    .map(|&i| ta.align_f[i] - tb.align_f[i])
                    .collect();
                if let (Some(p), Some(q)) = (mean(&probe_d), mean(&align_d)) {
                    probe_means.push(p);
                    align_means.push(q);
                }
                per_seed.push(json!({
                    "seed": seed,
                    "test_images": images.len(),
                    "probe_accuracy_removed": acc(ta),
                    "probe_accuracy_kept": acc(tb),
                    "align_f_removed": align(ta),
                    "align_f_kept": align(tb),
                    "probe_difference": mean(&probe_d),
                    "probe_difference_over_images": crate::stats::mean_interval(&probe_d),
                    "align_f_difference": mean(&align_d),
                    "align_f_difference_over_images": crate::stats::mean_interval(&align_d),
                }));
            }
            out.push(json!({
                "k": k,
                "arm": arm,
                "seeds": per_seed,
                "probe_difference": crate::stats::mean_interval(&probe_means),
                "align_f_difference": crate::stats::mean_interval(&align_means),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_rank_by_score_and_random_picks_are_seeded_subsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("scores.csv");
        // An audit's columns; only set, index and score matter here. `input` may hold commas.
        let csv = |rows: &[(&str, usize, &str, &str, f64)]| {
            let mut text = crate::audit::scores::COLUMNS.join(",") + "\n";
            for (set, index, input, label, score) in rows {
                let align_g = 0.5 + score;
                text += &format!(
                    "{set},{index},{input},{label},0.5,{align_g},{score},0,,,,false,1,,,,4,,\n"
                );
            }
            text
        };
        fs::write(
            &p,
            csv(&[
                ("candidate", 4, "\"a,b\"", "1", 0.5),
                ("shared", 1, "x", "1", 0.9),
                ("candidate", 2, "y", "", 0.7),
                ("candidate", 9, "z", "0", -0.1),
            ]),
        )
        .expect("write");
        let r = ranked_candidates(&p).expect("ranked");
        assert_eq!(r, [(2, 0.7), (4, 0.5), (9, -0.1)]);
        let a = random_pick(&r, 2, 7);
        assert_eq!(a, random_pick(&r, 2, 7));
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|i| [2, 4, 9].contains(i)));
        let picks: std::collections::BTreeSet<Vec<usize>> =
            (0..20).map(|s| random_pick(&r, 2, s)).collect();
        assert!(picks.len() > 1, "different seeds pick differently");
        fs::write(&p, csv(&[("shared", 1, "x", "1", 0.2)])).expect("write");
        assert!(ranked_candidates(&p).is_err());
        fs::write(&p, "set,index\ncandidate,1\n").expect("write");
        assert!(ranked_candidates(&p).is_err());
    }

    #[test]
    fn the_summary_intervals_match_a_hand_computation() {
        // Six test images whose nearest training images are 10, 11, 12, 13, 10, 14. Every
        // seed's top removes {10, 11} and its random control {11, 12}: the top's
        // subpopulation is test images 0 and 4 (11 was removed by both arms), the random's
        // test image 2.
        let nearest = [10, 11, 12, 13, 10, 14];
        let run = |strategy: &str, seed: u64, acc: f64, wrong: &[usize], align: f64| RemovalRun {
            strategy: strategy.into(),
            k: 2,
            seed,
            train_examples: 8,
            linear_probe_accuracy: acc,
            knn_accuracy: 0.5,
            epochs: Some(1),
            removed: if strategy == "top" {
                vec![10, 11]
            } else {
                vec![11, 12]
            },
            test: Some(TestOutcomes {
                probe_correct: (0..6).map(|i| !wrong.contains(&i)).collect(),
                align_f: (0..6)
                    .map(|i| if [0, 4].contains(&i) { align } else { 0.2 })
                    .collect(),
            }),
        };
        let results = vec![
            run("top", 0, 0.80, &[0, 4], 0.3),
            run("random", 0, 0.85, &[], 0.2),
            run("top", 1, 0.82, &[0, 4], 0.4),
            run("random", 1, 0.83, &[], 0.2),
            run("top", 2, 0.78, &[0], 0.5),
            run("random", 2, 0.86, &[], 0.2),
        ];
        let seeds = [0, 1, 2];
        let close = |v: &Value, want: f64| {
            let got = v.as_f64().expect("number");
            assert!((got - want).abs() < 1e-5, "{got} != {want}");
        };
        // Whole test set: d = [-0.05, -0.01, -0.08], mean -0.046667, sd 0.035119;
        // t(0.975, 2) = 4.302653, t(0.8, 2) = 1.060660.
        let whole = &top_minus_random(&results, &[2], &seeds)[0];
        let iv = &whole["interval"];
        close(&iv["mean"], -0.046_667);
        close(&iv["sd"], 0.035_119);
        let se = 0.035_119_1 / 3f64.sqrt();
        close(&iv["ci95"][0], -0.046_667 - 4.302_653 * se);
        close(&iv["ci95"][1], -0.046_667 + 4.302_653 * se);
        close(&iv["minimum_detectable"], (4.302_653 + 1.060_660) * se);
        // The top's subpopulation: per seed the probe differences (removed minus kept) are
        // -1, -1 and -0.5 (mean -0.833333, sd 0.288675) and align_f's 0.1, 0.2, 0.3.
        let sub = subpopulations(&results, &nearest, &[2], &seeds);
        let top = &sub[0];
        assert_eq!(top["arm"], "top");
        assert_eq!(top["seeds"][0]["test_images"], 2);
        close(&top["seeds"][2]["probe_accuracy_removed"], 0.5);
        close(&top["seeds"][2]["probe_accuracy_kept"], 1.0);
        close(&top["seeds"][1]["align_f_removed"], 0.4);
        close(&top["probe_difference"]["mean"], -0.833_333);
        close(
            &top["probe_difference"]["ci95"][1],
            -0.833_333 + 4.302_653 * 0.288_675 / 3f64.sqrt(),
        );
        close(&top["align_f_difference"]["mean"], 0.2);
        close(
            &top["align_f_difference"]["ci95"][0],
            0.2 - 4.302_653 * 0.1 / 3f64.sqrt(),
        );
        // Over the two images of seed 2: differences -1 and 0 (sd 1/sqrt(2), se 0.5).
        let s2 = &top["seeds"][2]["probe_difference_over_images"];
        close(&s2["mean"], -0.5);
        close(&s2["ci95"][0], -0.5 - 12.706_205 * 0.5);
        // The random's subpopulation (test image 2): nothing differs.
        let random = &sub[1];
        assert_eq!(random["arm"], "random");
        assert_eq!(random["seeds"][0]["test_images"], 1);
        close(&random["probe_difference"]["mean"], 0.0);
        close(&random["align_f_difference"]["sd"], 0.0);
        // A run made before the per-image outcomes existed leaves its seed out.
        let mut old = results.clone();
        old[1].test = None;
        let sub = subpopulations(&old, &nearest, &[2], &seeds);
        assert_eq!(sub[0]["seeds"].as_array().expect("seeds").len(), 2);
    }

    #[test]
    fn the_nearest_training_image_is_found_in_normalised_pixels() {
        let array = |name: &str, pixels: Vec<u8>| ImageArray {
            name: name.into(),
            channels: 1,
            height: 1,
            width: 2,
            pixels,
            labels: None,
        };
        let train = array("t", vec![0, 0, 255, 255, 0, 255, 230, 230]);
        let test = array("q", vec![242, 242, 25, 0, 0, 204]);
        let norm = Normalize::new(vec![0.5], vec![0.25], 1).expect("norm");
        // Among examples 0, 2 and 3 only (example 1 is not f's).
        assert_eq!(
            nearest_training(&train, &[0, 2, 3], &test, &norm).expect("nearest"),
            [3, 0, 2]
        );
    }

    #[test]
    fn the_random_control_draws_the_class_histogram_of_the_top() {
        // 30 candidates in 3 classes (index % 3), ranked by index; labels for all but 29.
        let ranked: Vec<(usize, f64)> = (0..30).map(|i| (i, -(i as f64))).collect();
        let labels: BTreeMap<usize, u8> = (0..29).map(|i| (i, (i % 3) as u8)).collect();
        // The top: four of class 0, one of class 1, and the unlabelled 29.
        let top = vec![0, 3, 6, 9, 1, 29];
        for seed in 0..20 {
            let pick = class_matched_pick(&ranked, &labels, &top, seed);
            assert_eq!(pick.len(), top.len());
            let mut hist: BTreeMap<Option<u8>, usize> = BTreeMap::new();
            for i in &pick {
                *hist.entry(labels.get(i).copied()).or_default() += 1;
            }
            assert_eq!(
                hist,
                BTreeMap::from([(None, 1), (Some(0), 4), (Some(1), 1)]),
                "seed {seed}: {pick:?}"
            );
            let mut dedup = pick.clone();
            dedup.dedup();
            assert_eq!(dedup, pick, "without replacement");
            assert_eq!(pick, class_matched_pick(&ranked, &labels, &top, seed));
        }
        let draws: std::collections::BTreeSet<Vec<usize>> = (0..20)
            .map(|s| class_matched_pick(&ranked, &labels, &top, s))
            .collect();
        assert!(draws.len() > 1, "seeds draw differently");
        // Without labels it is the uniform draw.
        let plain = class_matched_pick(&ranked, &BTreeMap::new(), &top, 5);
        assert_eq!(plain.len(), 6);
    }
}
