//! The audit of a bundle that holds `f` only (docs/science.md#one-model-scores): no SSLMem
//! score, but each example's alignment under `f` and, with a reference population, its two
//! calibrated one-model scores. Its `scores.jsonl` / `scores.csv` hold [`OneModelRow`]s; its
//! `summary.json` is the audit's [`super::summary::Summary`] with the SSLMem parts empty and
//! [`OneModelSummary`] filled in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Record, SplitSet};
use crate::error::{Error, Result};
use crate::score::calibrate::Calibrated;
use crate::stats::describe;
use crate::stats::Spread;

/// One example of a one-model audit: a line of `scores.jsonl` and a row of `scores.csv`.
/// Nothing here is an SSLMem score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneModelRow {
    pub set: SplitSet,
    /// The example's index in its set's dataset (the input's position for inputs).
    pub index: usize,
    pub input: String,
    pub label: Option<u8>,
    /// Mean distance between paired views under the `f` encoders.
    pub align_f: f64,
    /// Its standard error over the view pairs; `None` for one pair.
    pub align_f_stderr: Option<f64>,
    /// Lower end of its 95% interval; `None` for one pair.
    pub align_f_ci95_low: Option<f64>,
    /// Upper end of that interval.
    pub align_f_ci95_high: Option<f64>,
    /// The percentile of `align_f` among the reference images', in [0, 1]; low is
    /// member-like. `None` without a reference.
    pub align_f_percentile: Option<f64>,
    /// The nearest reference images' mean `align_f` minus this example's; high is
    /// member-like. `None` without a reference.
    pub knn_gap: Option<f64>,
    /// Rank within the set by the most informed one-model score: `knn_gap` (highest first)
    /// with a reference, else `align_f` (tightest first). 1 is the most member-like.
    pub rank: usize,
    /// Mean distance to the nearest same-label neighbours in `f`'s representation (higher:
    /// more atypical).
    pub typicality: Option<f64>,
    pub pairs: usize,
}

/// The columns of a one-model `scores.csv`: the fields of [`OneModelRow`], in order.
pub const COLUMNS: [&str; 13] = [
    "set",
    "index",
    "input",
    "label",
    "align_f",
    "align_f_stderr",
    "align_f_ci95_low",
    "align_f_ci95_high",
    "align_f_percentile",
    "knn_gap",
    "rank",
    "typicality",
    "pairs",
];

/// The rows of the scored records, grouped by set in the order the sets were scored, ranked
/// within each set ([`OneModelRow::rank`]).
pub fn rows(
    records: &[Record],
    calibrated: &[Option<Calibrated>],
    typicality: &[Option<f64>],
) -> Vec<OneModelRow> {
    let mut out = Vec::new();
    for set in super::sets_of(records) {
        let mut rows: Vec<OneModelRow> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.set == set)
            .filter_map(|(k, r)| {
                let a = r.alignment.as_ref()?;
                let c = calibrated.get(k).copied().flatten().unwrap_or_default();
                Some(OneModelRow {
                    set,
                    index: r.index,
                    input: r.input.clone(),
                    label: r.label,
                    align_f: a.align_f,
                    align_f_stderr: a.align_f_stderr,
                    align_f_ci95_low: a.align_f_ci95.map(|c| c[0]),
                    align_f_ci95_high: a.align_f_ci95.map(|c| c[1]),
                    align_f_percentile: c.align_f_percentile,
                    knn_gap: c.knn_gap,
                    rank: 0,
                    typicality: typicality.get(k).copied().flatten(),
                    pairs: a.pairs,
                })
            })
            .collect();
        let key = |r: &OneModelRow| r.knn_gap.unwrap_or(-r.align_f);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&x, &y| key(&rows[y]).total_cmp(&key(&rows[x])).then(x.cmp(&y)));
        for (rank, i) in order.into_iter().enumerate() {
            rows[i].rank = rank + 1;
        }
        out.extend(rows);
    }
    out
}

/// `scores.csv` of a one-model audit: [`COLUMNS`], then a line per row.
pub fn to_csv(rows: &[OneModelRow]) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::output("CSV", e);
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(COLUMNS).map_err(err)?;
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    w.into_inner().map_err(|e| Error::output("CSV", e))
}

/// The one-model part of `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneModelSummary {
    /// What each field is, in words.
    pub fields: String,
    /// Scored images of the reference population; `None` without one.
    pub reference_images: Option<usize>,
    /// Reference neighbours of `knn_gap`; `None` without a reference.
    pub knn: Option<usize>,
    /// Per set: the spread of each one-model field.
    pub sets: BTreeMap<SplitSet, OneModelGroup>,
}

/// The one-model fields of one set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneModelGroup {
    pub count: usize,
    pub align_f: Option<Spread>,
    pub align_f_percentile: Option<Spread>,
    pub knn_gap: Option<Spread>,
}

/// The one-model summary of `rows`, with `reference_images` scored reference images and
/// `knn` neighbours (both `None` without a reference).
pub fn summarize(
    rows: &[OneModelRow],
    reference_images: Option<usize>,
    knn: Option<usize>,
) -> OneModelSummary {
    let mut sets = BTreeMap::new();
    for set in rows.iter().map(|r| r.set) {
        if sets.contains_key(&set) {
            continue;
        }
        let of = |f: fn(&OneModelRow) -> Option<f64>| -> Option<Spread> {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| r.set == set)
                .filter_map(f)
                .filter(|v| v.is_finite())
                .collect();
            describe(&v).map(Spread::from)
        };
        sets.insert(
            set,
            OneModelGroup {
                count: rows.iter().filter(|r| r.set == set).count(),
                align_f: of(|r| Some(r.align_f)),
                align_f_percentile: of(|r| r.align_f_percentile),
                knn_gap: of(|r| r.knn_gap),
            },
        );
    }
    OneModelSummary {
        fields: FIELDS.into(),
        reference_images,
        knn,
        sets,
    }
}

/// What the one-model fields are, as `summary.json` says it.
pub const FIELDS: &str = "one-model scores, not SSLMem (the bundle has no g): align_f, the mean distance between paired augmented views under f (lower: f aligns the image more tightly, as training on it does); align_f_percentile, the share of reference images whose align_f is lower (ties count half; low is member-like); knn_gap, the mean align_f of the k nearest reference images in f's representation minus the image's (high is member-like). docs/science.md#one-model-scores";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::estimate_alignment;

    fn rec(set: SplitSet, i: usize, d: &[f64]) -> Record {
        Record {
            set,
            index: i,
            input: format!("x#{i}"),
            label: Some(0),
            score: None,
            alignment: Some(estimate_alignment(d)),
            per_encoder: None,
            error: None,
        }
    }

    #[test]
    fn rows_carry_the_alignment_and_calibration_and_rank_by_the_gap() {
        let records = vec![
            rec(SplitSet::Candidate, 0, &[0.2, 0.4]),
            rec(SplitSet::Candidate, 1, &[0.1, 0.1]),
            rec(SplitSet::Extra, 2, &[0.5, 0.5]),
        ];
        let cal = |gap: f64| {
            Some(Calibrated {
                align_f_percentile: Some(0.5),
                knn_gap: Some(gap),
            })
        };
        let rows = rows(&records, &[cal(0.3), cal(0.1), cal(-0.2)], &[None; 3]);
        assert_eq!(rows.len(), 3);
        assert!((rows[0].align_f - 0.3).abs() < 1e-12);
        assert!(rows[0].align_f_stderr.is_some() && rows[1].align_f_stderr == Some(0.0));
        // By knn_gap: 0.3 before 0.1.
        assert_eq!((rows[0].rank, rows[1].rank, rows[2].rank), (1, 2, 1));
        // Without calibration: by align_f, tightest first.
        let rows = super::rows(&records, &[], &[]);
        assert_eq!((rows[0].rank, rows[1].rank), (2, 1));
        assert!(rows[0].knn_gap.is_none());
        let csv = String::from_utf8(to_csv(&rows).expect("csv")).expect("utf8");
        assert_eq!(csv.lines().next(), Some(COLUMNS.join(",").as_str()));
        assert_eq!(csv.lines().count(), 4);
        let s = summarize(&rows, None, None);
        assert_eq!(s.sets[&SplitSet::Candidate].count, 2);
        assert!(s.sets[&SplitSet::Candidate].knn_gap.is_none());
    }

    #[test]
    fn the_columns_are_the_row_fields_in_order() {
        let rows = rows(&[rec(SplitSet::Extra, 0, &[0.1])], &[], &[]);
        let v = serde_json::to_value(&rows[0]).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("obj")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, COLUMNS);
    }
}
