//! `sslmem score`: SSLMem of each input through the engine, as JSON lines or CSV.

use std::io::Write;
use std::path::PathBuf;

use super::choice_arg::choice;
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use serde::Serialize;
use sslmem::bundle::Bundle;
use sslmem::data::inputs::{resolve, Input};
use sslmem::engine::{Engine, EstimatorOptions, Quiet};
use sslmem::error::{Error, Result};
use sslmem::fsutil::write_atomic;
use sslmem::output::progress_bar;
use sslmem::runtime::RuntimeOptions;
use sslmem::score::{
    set_normalize, Distance, ImageScore, RepNorm, ScoreOptions, ScoreRecord, SetNorm, ViewMode,
};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// How each image is scored: shared by `score` and `audit`.
#[derive(Args, Debug, Clone)]
pub struct EstimatorArgs {
    /// View pairs per image (K).
    #[arg(long, env = "SSLMEM_PAIRS", default_value_t = 10)]
    pub pairs: usize,
    /// Seed of the augmentations; views depend only on (seed, image, view index).
    #[arg(long, env = "SSLMEM_SEED", default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "SSLMEM_MODE", value_parser = choice::<ViewMode>(), default_value = "aug-vs-aug")]
    pub mode: ViewMode,
    #[arg(long, env = "SSLMEM_DISTANCE", value_parser = choice::<Distance>(), default_value = "l2")]
    pub distance: Distance,
    /// Representation normalisation before the distance.
    #[arg(long, env = "SSLMEM_NORMALIZE", value_parser = choice::<RepNorm>(), default_value = "l2")]
    pub normalize: RepNorm,
    /// Views per inference batch.
    #[arg(long, env = "SSLMEM_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Largest image accepted, in pixels (width * height).
    #[arg(long, env = "SSLMEM_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
}

impl EstimatorArgs {
    pub fn options(&self) -> Result<EstimatorOptions> {
        if self.pairs == 0 {
            return Err(Error::Param("--pairs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Param("--batch-size must be at least 1".into()));
        }
        Ok(EstimatorOptions {
            score: ScoreOptions {
                pairs: self.pairs,
                seed: self.seed,
                mode: self.mode,
                distance: self.distance,
                normalize: self.normalize,
            },
            batch_size: self.batch_size,
            max_pixels: self.max_pixels,
        })
    }
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Model bundle folder (holds sslmem.json).
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub est: EstimatorArgs,
    /// Score another output of the encoders than the bundle's representation: one of the
    /// manifest's `layers` (a feature map is flattened per image), as LayerMem does for each
    /// layer (docs/science.md#layermem).
    #[arg(long, env = "SSLMEM_OUTPUT", value_name = "LAYER")]
    pub output: Option<String>,
    /// Add set-level normalised scores (`score_range`, `score_max`); repeatable.
    #[arg(long, env = "SSLMEM_SET_NORMALIZE", value_parser = choice::<SetNorm>(), value_delimiter = ',')]
    pub set_normalize: Vec<SetNorm>,
    #[arg(long, env = "SSLMEM_FORMAT", value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Output file (written atomically); standard output if absent.
    #[arg(long, env = "SSLMEM_OUT")]
    pub out: Option<PathBuf>,
    /// Image files, folders, datasets (fashion-mnist:train, fashion-mnist:test, mnist) or IDX
    /// files; datasets take a range: `fashion-mnist:test[0:500]`.
    #[arg(required = true)]
    pub inputs: Vec<String>,
}

/// Inputs decoded per round: bounds memory on huge datasets while keeping batches full.
const LOAD_CHUNK: usize = 2048;

/// Returns Ok(true) when every input was scored.
pub fn run(a: &ScoreArgs, rt: &RuntimeOptions) -> Result<bool> {
    let est = a.est.options()?;
    let inputs = resolve(&a.inputs)?;
    let mut engine = Engine::start(Bundle::load(&a.bundle, rt)?, est.queue(), Quiet::shared())?;
    if let Some(output) = &a.output {
        engine = engine.with_output(output)?;
    }
    let limits = est.limits();
    let channels = engine.input().channels;
    tracing::info!(
        inputs = inputs.len(),
        pairs = est.score.pairs,
        mode = ?est.score.mode,
        f = engine.bundle().f.len(),
        g = engine.bundle().g.len(),
        output = engine.output(),
        "scoring with {}",
        a.bundle.display()
    );
    let pb = progress_bar(inputs.len(), "scoring");
    let mut scored: Vec<(&Input, ImageScore)> = Vec::with_capacity(inputs.len());
    let mut failed = 0usize;
    for chunk in inputs.chunks(LOAD_CHUNK) {
        let loaded: Vec<_> = chunk.par_iter().map(|i| i.load(channels, limits)).collect();
        let mut ok_inputs = Vec::with_capacity(chunk.len());
        let mut images = Vec::with_capacity(chunk.len());
        for (input, r) in chunk.iter().zip(loaded) {
            match r {
                Ok(img) => {
                    ok_inputs.push(input);
                    images.push(img);
                }
                Err(e) => {
                    failed += 1;
                    pb.suspend(|| tracing::error!(input = %input.name, "skipped: {e}"));
                    pb.inc(1);
                }
            }
        }
        let scores = engine.score_each(&images, &est.score, &|n| pb.inc(n as u64))?;
        for (input, s) in ok_inputs.into_iter().zip(scores) {
            match s {
                Ok(s) => scored.push((input, s)),
                Err(e) => {
                    failed += 1;
                    pb.suspend(|| tracing::error!(input = %input.name, "not scored: {e}"));
                }
            }
        }
    }
    pb.finish_and_clear();

    let all: Vec<ImageScore> = scored.iter().map(|(_, s)| s.clone()).collect();
    let extra: Vec<(SetNorm, Vec<Option<f64>>)> = a
        .set_normalize
        .iter()
        .map(|&k| (k, set_normalize(&all, k)))
        .collect();
    let lines: Vec<ScoreLine> = scored
        .iter()
        .enumerate()
        .map(|(i, (input, s))| ScoreLine {
            record: ScoreRecord::new(input.name.clone(), s),
            label: input.label(),
            norms: extra.iter().map(|(k, v)| (*k, v[i])).collect(),
        })
        .collect();
    let text = match a.format {
        Format::Jsonl => to_jsonl(&lines)?,
        Format::Csv => to_csv(&lines, &a.set_normalize)?,
    };
    match &a.out {
        Some(p) => write_atomic(p, text.as_bytes())?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("<stdout>", e))?,
    }
    tracing::info!(scored = scored.len(), failed, "done");
    if failed > 0 {
        tracing::error!(
            "{failed} of {} inputs could not be scored (see above)",
            inputs.len()
        );
    }
    Ok(failed == 0)
}

fn set_norm_field(k: SetNorm) -> &'static str {
    match k {
        SetNorm::Range => "score_range",
        SetNorm::Max => "score_max",
    }
}

/// A line of `sslmem score --format jsonl`: the image's [`ScoreRecord`] with its label (for
/// labelled datasets) after `input` and the set-level normalisations asked for (in the order
/// asked, `null` where undefined) before `stderr`, the order of the CSV's columns.
struct ScoreLine {
    record: ScoreRecord,
    label: Option<u8>,
    norms: Vec<(SetNorm, Option<f64>)>,
}

impl Serialize for ScoreLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = &self.record;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("input", &r.input)?;
        if let Some(l) = self.label {
            m.serialize_entry("label", &l)?;
        }
        m.serialize_entry("align_f", &r.align_f)?;
        m.serialize_entry("align_g", &r.align_g)?;
        m.serialize_entry("score", &r.score)?;
        m.serialize_entry("score_ratio", &r.score_ratio)?;
        for (k, v) in &self.norms {
            m.serialize_entry(set_norm_field(*k), v)?;
        }
        m.serialize_entry("stderr", &r.stderr)?;
        m.serialize_entry("ci95", &r.ci95)?;
        m.serialize_entry("pairs", &r.pairs)?;
        m.end()
    }
}

fn to_jsonl(lines: &[ScoreLine]) -> Result<String> {
    let mut out = String::new();
    for line in lines {
        out.push_str(&serde_json::to_string(line).map_err(|e| Error::output("JSON", e))?);
        out.push('\n');
    }
    Ok(out)
}

/// `lines` as the CSV table; `norms` (the set-level normalisations asked for, in order) make
/// its columns even when no image was scored.
fn to_csv(lines: &[ScoreLine], norms: &[SetNorm]) -> Result<String> {
    // Numbers as Rust's `Display` writes them (`0.1`, `0.0000001`), as this table always had.
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut header: Vec<&str> = vec![
        "input",
        "label",
        "align_f",
        "align_g",
        "score",
        "score_ratio",
    ];
    header.extend(norms.iter().map(|k| set_norm_field(*k)));
    header.extend(["stderr", "ci95_low", "ci95_high", "pairs"]);
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::output("the CSV table", e);
    w.write_record(&header).map_err(fail)?;
    for line in lines {
        let r = &line.record;
        let mut row = vec![
            r.input.clone(),
            line.label.map(|l| l.to_string()).unwrap_or_default(),
            r.align_f.to_string(),
            r.align_g.to_string(),
            r.score.to_string(),
            r.score_ratio.to_string(),
        ];
        row.extend(line.norms.iter().map(|(_, v)| opt(*v)));
        row.push(opt(r.stderr));
        row.push(opt(r.ci95.map(|c| c[0])));
        row.push(opt(r.ci95.map(|c| c[1])));
        row.push(r.pairs.to_string());
        w.write_record(&row).map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::output("the CSV table", e.error()))?;
    String::from_utf8(bytes).map_err(|e| Error::output("the CSV table", e))
}
