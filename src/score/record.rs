//! One image's score as every front end reports it: [`ScoreRecord`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ImageScore;

/// One image's score (fields as in docs/scoring.md): a `/v1/score` result, the core of each
/// line of `sslmem score` (which adds the label and set-level normalisations it was asked
/// for), and of each row of an audit's `scores.jsonl` / `scores.csv`
/// (`crate::audit::ScoreRow`, which adds the set, index, rank and typicality).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ScoreResult)]
pub struct ScoreRecord {
    /// The image's name: a file path, a dataset example (`fashion-mnist:test#3`), or in HTTP
    /// its file name, JSON `name`, or `image#N`.
    pub input: String,
    /// Mean distance between paired views under the `f` encoders (trained with the image).
    pub align_f: f64,
    /// The same under the `g` encoders (trained without it).
    pub align_g: f64,
    /// Raw SSLMem score: align_g - align_f.
    pub score: f64,
    /// (align_g - align_f) / (align_g + align_f), in [-1, 1]; 0 when both are 0.
    pub score_ratio: f64,
    /// Standard error of `score`; null for one pair.
    pub stderr: Option<f64>,
    /// 95% interval of `score`; null for one pair.
    pub ci95: Option<[f64; 2]>,
    /// View pairs behind the numbers.
    pub pairs: usize,
}

impl ScoreRecord {
    /// The record of the image named `input` whose estimate is `s`.
    pub fn new(input: String, s: &ImageScore) -> Self {
        Self {
            input,
            align_f: s.align_f,
            align_g: s.align_g,
            score: s.score,
            score_ratio: s.score_ratio,
            stderr: s.stderr,
            ci95: s.ci95,
            pairs: s.pairs,
        }
    }
}

/// One image's one-model result (a bundle with `f` only: no SSLMem score; fields as in
/// docs/science.md#one-model-scores): a `/v1/score` result of a one-model bundle. Its
/// nullable fields are always written (null when absent) and required in the schema, so that
/// no SSLMem result also matches this schema (`ScoreEntry` is a `oneOf`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = OneModelResult)]
pub struct OneModelRecord {
    /// The image's name, as in [`ScoreRecord::input`].
    pub input: String,
    /// Mean distance between paired views under the `f` encoders.
    pub align_f: f64,
    /// Standard error of `align_f` over the view pairs; null for one pair.
    #[schema(required = true)]
    pub align_f_stderr: Option<f64>,
    /// 95% interval of `align_f`; null for one pair.
    #[schema(required = true)]
    pub align_f_ci95: Option<[f64; 2]>,
    /// The share of the reference population's images whose `align_f` is lower (ties count
    /// half), in [0, 1]; low is member-like. Null without a reference, or when the request's
    /// estimator settings differ from those the reference was scored with.
    #[schema(required = true)]
    pub align_f_percentile: Option<f64>,
    /// The mean `align_f` of the image's k nearest reference images (in `f`'s
    /// representation) minus its own; high is member-like. Null as `align_f_percentile`.
    #[schema(required = true)]
    pub knn_gap: Option<f64>,
    /// View pairs behind the numbers.
    pub pairs: usize,
}

impl OneModelRecord {
    /// The record of the image named `input` with alignment `a` and calibration `c`.
    pub fn new(input: String, a: &super::ViewAlignment, c: super::calibrate::Calibrated) -> Self {
        Self {
            input,
            align_f: a.align_f,
            align_f_stderr: a.align_f_stderr,
            align_f_ci95: a.align_f_ci95,
            align_f_percentile: c.align_f_percentile,
            knn_gap: c.knn_gap,
            pairs: a.pairs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_carries_the_estimate_and_serialises_in_its_documented_order() {
        let s = super::super::estimate(&[0.5, 0.7], &[0.9, 1.3]);
        let r = ScoreRecord::new("a.png".into(), &s);
        assert_eq!(
            (r.align_f, r.align_g, r.score),
            (s.align_f, s.align_g, s.score)
        );
        assert_eq!((r.stderr, r.ci95, r.pairs), (s.stderr, s.ci95, 2));
        let json = serde_json::to_value(&r).expect("json");
        let keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "input",
                "align_f",
                "align_g",
                "score",
                "score_ratio",
                "stderr",
                "ci95",
                "pairs"
            ]
        );
    }
}
