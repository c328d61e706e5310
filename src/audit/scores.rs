//! The audit's per-example table: `scores.jsonl` and `scores.csv` hold the same
//! [`ScoreRow`]s, one per scored example, grouped by set. `sslmem-train removal` reads the
//! CSV back through the same record ([`read_csv`]).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SplitSet;
use crate::error::{Error, Result};
use crate::score::ScoreRecord;

/// One scored example: a line of `scores.jsonl` and a row of `scores.csv`, with the same
/// fields in the same order: its [`ScoreRecord`] (the interval flattened into two columns, for
/// the CSV) with its set, index, label, rank, set-level normalisations and typicality
/// ([`ScoreRow::of`]).
///
/// `N` is how the real numbers are held: `f64` everywhere except while writing the CSV,
/// whose numbers are written as Rust's `Display` writes them (`0`, `0.00001`, `NaN`) rather
/// than as JSON writes them (`0.0`, `1e-5`, `null`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow<N = f64> {
    /// The set the example belongs to.
    pub set: SplitSet,
    /// The example's index in its set's dataset (the canary file, or the input, for those
    /// sets).
    pub index: usize,
    /// Its name, e.g. `fashion-mnist:train#12` or a file path.
    pub input: String,
    /// Its class, if the data has labels.
    pub label: Option<u8>,
    /// Mean distance between paired views under the `f` encoders (trained with the example).
    pub align_f: N,
    /// The same under the `g` encoders (trained without it).
    pub align_g: N,
    /// `align_g - align_f`.
    pub score: N,
    /// `(align_g - align_f) / (align_g + align_f)`, in [-1, 1].
    pub score_ratio: N,
    /// Standard error of `score` over the view pairs; `None` for one pair.
    pub stderr: Option<N>,
    /// Lower end of the 95% interval of `score`; `None` for one pair.
    pub ci95_low: Option<N>,
    /// Upper end of that interval.
    pub ci95_high: Option<N>,
    /// `ci95_low > 0`.
    pub significant: bool,
    /// Rank of `score` within the set: 1 is the highest.
    pub rank: usize,
    /// The set-level `range` normalisation (`crate::score::SetNorm::Range`): `score` over the
    /// set's max - min of `score`; `None` where undefined.
    pub score_range: Option<N>,
    /// The set-level `max` normalisation (`crate::score::SetNorm::Max`); `None` where
    /// undefined.
    pub score_max: Option<N>,
    /// Mean distance to the nearest same-label neighbours under `g` (higher: more atypical).
    pub typicality: Option<N>,
    /// View pairs scored.
    pub pairs: usize,
    /// One-model calibration (docs/science.md#one-model-scores): the percentile of
    /// `align_f` among the reference population's, in [0, 1] (low: member-like); `None`
    /// without `--reference`.
    #[serde(default)]
    pub align_f_percentile: Option<N>,
    /// One-model calibration: the mean `align_f` of the nearest reference images in `f`'s
    /// representation minus this example's (high: member-like); `None` without
    /// `--reference`.
    #[serde(default)]
    pub knn_gap: Option<N>,
}

/// The columns of `scores.csv`: the fields of [`ScoreRow`], in order (a test checks this).
/// Written as the header even when no example could be scored.
pub const COLUMNS: [&str; 19] = [
    "set",
    "index",
    "input",
    "label",
    "align_f",
    "align_g",
    "score",
    "score_ratio",
    "stderr",
    "ci95_low",
    "ci95_high",
    "significant",
    "rank",
    "score_range",
    "score_max",
    "typicality",
    "pairs",
    "align_f_percentile",
    "knn_gap",
];

/// A number of `scores.csv`, written as `Display` writes it.
struct Plain(f64);

impl Serialize for Plain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl ScoreRow {
    /// The row of example `index` of `set` (with class `label`), scored `record` and ranked
    /// `rank` (1: the highest score of its set); the set-level normalisations and typicality
    /// are left empty for the audit to fill in.
    pub fn of(
        set: SplitSet,
        index: usize,
        label: Option<u8>,
        record: ScoreRecord,
        rank: usize,
    ) -> Self {
        let (lo, hi) = (record.ci95.map(|c| c[0]), record.ci95.map(|c| c[1]));
        Self {
            set,
            index,
            input: record.input,
            label,
            align_f: record.align_f,
            align_g: record.align_g,
            score: record.score,
            score_ratio: record.score_ratio,
            stderr: record.stderr,
            ci95_low: lo,
            ci95_high: hi,
            significant: lo.is_some_and(|l| l > 0.0),
            rank,
            score_range: None,
            score_max: None,
            typicality: None,
            pairs: record.pairs,
            align_f_percentile: None,
            knn_gap: None,
        }
    }
}

impl<N> ScoreRow<N> {
    /// The same row with its real numbers converted by `f`.
    fn map_numbers<M>(&self, f: impl Fn(&N) -> M) -> ScoreRow<M> {
        ScoreRow {
            set: self.set,
            index: self.index,
            input: self.input.clone(),
            label: self.label,
            align_f: f(&self.align_f),
            align_g: f(&self.align_g),
            score: f(&self.score),
            score_ratio: f(&self.score_ratio),
            stderr: self.stderr.as_ref().map(&f),
            ci95_low: self.ci95_low.as_ref().map(&f),
            ci95_high: self.ci95_high.as_ref().map(&f),
            significant: self.significant,
            rank: self.rank,
            score_range: self.score_range.as_ref().map(&f),
            score_max: self.score_max.as_ref().map(&f),
            typicality: self.typicality.as_ref().map(&f),
            pairs: self.pairs,
            align_f_percentile: self.align_f_percentile.as_ref().map(&f),
            knn_gap: self.knn_gap.as_ref().map(&f),
        }
    }
}

fn runtime<E: fmt::Display>(e: E) -> Error {
    Error::output("JSON", e)
}

/// `scores.jsonl`: one JSON object per row, each line ending in `\n`. Non-finite numbers
/// are written as `null`. Rows are [`ScoreRow`]s, or a one-model audit's
/// [`super::one_model::OneModelRow`]s.
pub fn to_jsonl<T: Serialize>(rows: &[T]) -> Result<String> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r).map_err(runtime)?);
        out.push('\n');
    }
    Ok(out)
}

/// `scores.csv`: the header ([`COLUMNS`]), then one line per row; fields are quoted only
/// when they hold a comma, a quote or a line break.
pub fn to_csv(rows: &[ScoreRow]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(COLUMNS).map_err(runtime)?;
    for r in rows {
        w.serialize(r.map_numbers(|&x| Plain(x))).map_err(runtime)?;
    }
    w.into_inner().map_err(runtime)
}

/// Reads an audit's `scores.csv` by its header, so columns may come in any order; a file
/// written before a column of type `Option` existed reads it as `None`.
///
/// Errors: the file cannot be read; it lacks a column `needs` names (with a hint that it may
/// not be an audit's scores.csv); a row does not parse (its line number is given).
pub fn read_csv(path: &Path, needs: &[&str]) -> Result<Vec<ScoreRow>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = csv::Reader::from_reader(file);
    let header = r
        .headers()
        .map_err(|e| Error::Param(format!("{}: {e}", path.display())))?
        .clone();
    if let Some(name) = needs.iter().find(|n| !header.iter().any(|h| h == **n)) {
        return Err(Error::Param(format!(
            "{}: no column '{name}'; is it an audit's scores.csv?",
            path.display()
        )));
    }
    r.deserialize()
        .enumerate()
        .map(|(n, row)| {
            row.map_err(|e| {
                Error::Param(format!(
                    "{}: line {} is malformed ({e})",
                    path.display(),
                    n + 2
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(set: SplitSet, index: usize, input: &str, score: f64) -> ScoreRow {
        ScoreRow {
            set,
            index,
            input: input.into(),
            label: (index == 0).then_some(3),
            align_f: 0.5,
            align_g: 0.5 + score,
            score,
            score_ratio: f64::NAN,
            stderr: Some(1e-5),
            ci95_low: (index > 0).then_some(-0.25),
            ci95_high: Some(1.0),
            significant: false,
            rank: index + 1,
            score_range: Some(0.0),
            score_max: None,
            typicality: Some(123456789.0),
            pairs: 4,
            align_f_percentile: None,
            knn_gap: None,
        }
    }

    #[test]
    fn csv_and_jsonl_write_the_same_columns_and_read_back() {
        let rows = [
            row(SplitSet::Candidate, 0, "a,b \"c\"", 0.25),
            row(SplitSet::CanaryHeldout, 1, "plain", -0.125),
        ];
        let csv = String::from_utf8(to_csv(&rows).expect("csv")).expect("utf8");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
        // Numbers as `Display` writes them; quotes only where needed; a trailing newline.
        assert_eq!(
            lines.next(),
            Some("candidate,0,\"a,b \"\"c\"\"\",3,0.5,0.75,0.25,NaN,0.00001,,1,false,1,0,,123456789,4,,")
        );
        assert_eq!(
            lines.next(),
            Some("canary-heldout,1,plain,,0.5,0.375,-0.125,NaN,0.00001,-0.25,1,false,2,0,,123456789,4,,")
        );
        assert!(csv.ends_with("4,,\n"));

        // The JSON objects have the CSV's columns, in order.
        let jsonl = to_jsonl(&rows).expect("jsonl");
        for line in jsonl.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let keys: Vec<&str> = v
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, COLUMNS);
            assert!(v["score_ratio"].is_null(), "NaN is null in JSON");
        }

        // Read back by header names: the same rows (NaN compares unequal, so compare text).
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("scores.csv");
        std::fs::write(&p, &csv).expect("write");
        let back = read_csv(&p, &["set", "index", "score"]).expect("read");
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));

        // No rows: the header alone.
        let empty = to_csv(&[]).expect("csv");
        assert_eq!(empty, format!("{}\n", COLUMNS.join(",")).into_bytes());
    }
}
