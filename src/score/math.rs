//! The formulas of docs/science.md#the-estimator: representation normalisation, distances,
//! the per-image estimator with its standard error, and set-level normalisations.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Distance between two representations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distance {
    /// Euclidean distance.
    L2,
    /// 1 - cosine similarity.
    Cosine,
    /// Sum of absolute differences.
    L1,
}

crate::choice!(Distance, "distance", {
    L2 = "l2" => "Euclidean distance.",
    Cosine = "cosine" => "1 - cosine similarity.",
    L1 = "l1" => "Sum of absolute differences.",
});

/// What is done to each representation before the distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepNorm {
    /// Divide by the l2 norm (so l2 distances lie in [0, 2]).
    L2,
    /// Use the raw representation.
    None,
}

crate::choice!(RepNorm, "representation normalisation", {
    L2 = "l2" => "Divide by the l2 norm (so l2 distances lie in [0, 2]).",
    None = "none" => "Use the raw representation.",
});

/// `F.normalize`'s guard against division by zero.
const NORM_EPS: f64 = 1e-12;

/// Distance between `a` and `b` after normalisation, in f64.
pub fn distance(a: &[f32], b: &[f32], norm: RepNorm, dist: Distance) -> f64 {
    let (mut aa, mut bb, mut ab) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        aa += x * x;
        bb += y * y;
        ab += x * y;
    }
    let (sa, sb) = match norm {
        RepNorm::L2 => (1.0 / aa.sqrt().max(NORM_EPS), 1.0 / bb.sqrt().max(NORM_EPS)),
        RepNorm::None => (1.0, 1.0),
    };
    match dist {
        // ||sa a - sb b||^2 expanded would lose precision for near-equal vectors; sum directly.
        Distance::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| {
                let d = f64::from(*x) * sa - f64::from(*y) * sb;
                d * d
            })
            .sum::<f64>()
            .sqrt(),
        Distance::L1 => a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) * sa - f64::from(*y) * sb).abs())
            .sum(),
        // Cosine does not depend on scale, so normalisation does not change it.
        // Rounding can leave 1 - cos a hair below 0 for parallel vectors; a distance is not.
        Distance::Cosine => {
            (1.0 - ab / (aa.sqrt().max(NORM_EPS) * bb.sqrt().max(NORM_EPS))).max(0.0)
        }
    }
}

/// The per-image result of the estimator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageScore {
    /// Mean distance between paired views under the `f` encoders (trained with the image).
    pub align_f: f64,
    /// The same under the `g` encoders (trained without it).
    pub align_g: f64,
    /// `raw` SSLMem score: align_g - align_f.
    pub score: f64,
    /// `ratio` score: (align_g - align_f) / (align_g + align_f), in [-1, 1]; 0 when both are 0.
    pub score_ratio: f64,
    /// Standard error of `score` from the per-pair differences; null for one pair.
    pub stderr: Option<f64>,
    /// 95% interval of `score` (Student's t with pairs - 1 degrees of freedom).
    pub ci95: Option<[f64; 2]>,
    pub pairs: usize,
}

/// Combines per-pair distances (already averaged over the encoders on each side).
/// Common random numbers: pair `k` went through both sides, so the differences
/// `d_g[k] - d_f[k]` carry the uncertainty.
pub fn estimate(d_f: &[f64], d_g: &[f64]) -> ImageScore {
    assert_eq!(d_f.len(), d_g.len(), "both sides see the same pairs");
    let k = d_f.len();
    let n = k as f64;
    let align_f = d_f.iter().sum::<f64>() / n;
    let align_g = d_g.iter().sum::<f64>() / n;
    let diffs: Vec<f64> = d_g.iter().zip(d_f).map(|(g, f)| g - f).collect();
    let score = diffs.iter().sum::<f64>() / n;
    let denom = align_g + align_f;
    // Both alignments 0 (identical views) is a ratio of 0; an undefined one stays NaN (null
    // in JSON), never a number that reads as "no memorization".
    let score_ratio = if denom > 0.0 {
        (align_g - align_f) / denom
    } else if denom.is_nan() {
        f64::NAN
    } else {
        0.0
    };
    let (stderr, ci95) = if k >= 2 {
        let var = diffs.iter().map(|d| (d - score).powi(2)).sum::<f64>() / (n - 1.0);
        let se = (var / n).sqrt();
        let t = t_quantile_975(k - 1);
        (Some(se), Some([score - t * se, score + t * se]))
    } else {
        (None, None)
    };
    ImageScore {
        align_f,
        align_g,
        score,
        score_ratio,
        stderr,
        ci95,
        pairs: k,
    }
}

/// One image's alignment under the `f` encoders alone: what a bundle with no `g` gives
/// (a one-model audit, docs/science.md#one-model-scores). Not an SSLMem score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ViewAlignment {
    /// Mean distance between paired views under the `f` encoders, over the `pairs` view
    /// pairs (as [`ImageScore::align_f`]).
    pub align_f: f64,
    /// Standard error of `align_f` over the view pairs; null for one pair.
    pub align_f_stderr: Option<f64>,
    /// 95% interval of `align_f` (Student's t with pairs - 1 degrees of freedom); null for
    /// one pair.
    pub align_f_ci95: Option<[f64; 2]>,
    pub pairs: usize,
}

/// The alignment under `f` alone from per-pair distances (already averaged over the `f`
/// encoders): their mean, its standard error and t interval, as [`estimate`] gives them for
/// the difference.
///
/// # Panics
/// On an empty `d_f` (K is at least 1 everywhere it is called).
pub fn estimate_alignment(d_f: &[f64]) -> ViewAlignment {
    assert!(!d_f.is_empty(), "at least one view pair");
    let k = d_f.len();
    let n = k as f64;
    let align_f = d_f.iter().sum::<f64>() / n;
    let (align_f_stderr, align_f_ci95) = if k >= 2 {
        let var = d_f.iter().map(|d| (d - align_f).powi(2)).sum::<f64>() / (n - 1.0);
        let se = (var / n).sqrt();
        let t = t_quantile_975(k - 1);
        (Some(se), Some([align_f - t * se, align_f + t * se]))
    } else {
        (None, None)
    };
    ViewAlignment {
        align_f,
        align_f_stderr,
        align_f_ci95,
        pairs: k,
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile_975(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64).map_or(1.959_963_984_540_054, |t| t.inverse_cdf(0.975))
}

/// Set-level normalisations (docs/science.md#set-level-normalisations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetNorm {
    /// raw / (max(raw) - min(raw)) over the set, no centring (ICLR 2024 reference code).
    Range,
    /// align / max(align) per side, then the difference over its maximum.
    Max,
}

crate::choice!(SetNorm, "set normalisation", {
    Range = "range" => "raw / (max(raw) - min(raw)) over the set, no centring (ICLR 2024 reference code).",
    Max = "max" => "align / max(align) per side, then the difference over its maximum.",
});

/// Applies a set-level normalisation; `None` where it is undefined (empty range,
/// non-positive maximum).
pub fn set_normalize(scores: &[ImageScore], kind: SetNorm) -> Vec<Option<f64>> {
    if scores.is_empty() {
        return Vec::new();
    }
    match kind {
        SetNorm::Range => {
            let (lo, hi) = scores
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
                    (lo.min(s.score), hi.max(s.score))
                });
            let range = hi - lo;
            scores
                .iter()
                .map(|s| (range > 0.0).then(|| s.score / range))
                .collect()
        }
        SetNorm::Max => {
            let max_f = scores
                .iter()
                .map(|s| s.align_f)
                .fold(f64::NEG_INFINITY, f64::max);
            let max_g = scores
                .iter()
                .map(|s| s.align_g)
                .fold(f64::NEG_INFINITY, f64::max);
            if !(max_f > 0.0 && max_g > 0.0) {
                return vec![None; scores.len()];
            }
            let diffs: Vec<f64> = scores
                .iter()
                .map(|s| s.align_g / max_g - s.align_f / max_f)
                .collect();
            let max_d = diffs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            diffs
                .iter()
                .map(|d| (max_d > 0.0).then(|| d / max_d))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Found by schemathesis: cosine distances of parallel vectors rounded to -2e-16 made the
    /// ratio's denominator negative. Distances are never negative, and an undefined ratio (NaN
    /// distances) stays NaN instead of reading as 0.
    #[test]
    fn distances_are_never_negative_and_undefined_ratios_stay_undefined() {
        let a = [0.1f32, 0.7, -0.3, 0.2];
        let b: Vec<f32> = a.iter().map(|v| v * 3.0).collect();
        for norm in [RepNorm::L2, RepNorm::None] {
            for dist in [Distance::L2, Distance::Cosine, Distance::L1] {
                assert!(distance(&a, &b, RepNorm::L2, dist) >= 0.0);
                assert!(distance(&a, &a, norm, dist) >= 0.0);
            }
        }
        let s = estimate(&[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!(s.score_ratio, 0.0);
        let s = estimate(&[f64::NAN, 0.1], &[0.2, 0.1]);
        assert!(s.score_ratio.is_nan() && s.score.is_nan());
    }

    #[test]
    fn distances_by_hand() {
        let (a, b) = ([3.0f32, 4.0], [0.0f32, 2.0]);
        assert!(close(
            distance(&a, &b, RepNorm::None, Distance::L2),
            (9.0f64 + 4.0).sqrt()
        ));
        assert!(close(distance(&a, &b, RepNorm::None, Distance::L1), 5.0));
        // Normalised: a -> (0.6, 0.8), b -> (0, 1).
        assert!(close(
            distance(&a, &b, RepNorm::L2, Distance::L2),
            (0.36f64 + 0.04).sqrt()
        ));
        assert!(close(
            distance(&a, &b, RepNorm::L2, Distance::L1),
            0.6 + 0.2
        ));
        assert!(close(
            distance(&a, &b, RepNorm::L2, Distance::Cosine),
            1.0 - 0.8
        ));
        assert!(close(
            distance(&a, &b, RepNorm::None, Distance::Cosine),
            1.0 - 0.8
        ));
        // Opposite unit vectors are 2 apart.
        assert!(close(
            distance(&[1.0, 0.0], &[-2.0, 0.0], RepNorm::L2, Distance::L2),
            2.0
        ));
        // A zero vector does not produce NaN.
        assert!(distance(&[0.0, 0.0], &[1.0, 0.0], RepNorm::L2, Distance::L2).is_finite());
    }

    #[test]
    fn estimator_by_hand() {
        let d_f = [0.1, 0.2, 0.3];
        let d_g = [0.3, 0.3, 0.6];
        let s = estimate(&d_f, &d_g);
        assert!(close(s.align_f, 0.2) && close(s.align_g, 0.4));
        assert!(close(s.score, 0.2));
        assert!(close(s.score_ratio, 0.2 / 0.6));
        // Differences 0.2, 0.1, 0.3: sample sd 0.1, se 0.1 / sqrt(3).
        let se = 0.1 / 3f64.sqrt();
        assert!(close(s.stderr.expect("se"), se));
        // t(0.975, 2) = 4.302652729...
        let ci = s.ci95.expect("ci");
        assert!(
            (ci[1] - (0.2 + 4.302_652_729_911 * se)).abs() < 1e-6,
            "{ci:?}"
        );
        assert!((ci[0] - (0.2 - 4.302_652_729_911 * se)).abs() < 1e-6);
        assert_eq!(s.pairs, 3);
    }

    #[test]
    fn alignment_alone_by_hand() {
        // Distances 0.1, 0.2, 0.6: mean 0.3, sample sd sqrt(0.07), se sqrt(0.07 / 3).
        let a = estimate_alignment(&[0.1, 0.2, 0.6]);
        assert!(close(a.align_f, 0.3));
        let se = (0.07f64 / 3.0).sqrt();
        assert!(close(a.align_f_stderr.expect("se"), se));
        let ci = a.align_f_ci95.expect("ci");
        assert!(
            (ci[0] - (0.3 - 4.302_652_729_911 * se)).abs() < 1e-6,
            "{ci:?}"
        );
        assert!(
            (ci[1] - (0.3 + 4.302_652_729_911 * se)).abs() < 1e-6,
            "{ci:?}"
        );
        assert_eq!(a.pairs, 3);
        // The same mean as the pair estimator's align_f.
        assert!(close(
            a.align_f,
            estimate(&[0.1, 0.2, 0.6], &[0.0; 3]).align_f
        ));
        let one = estimate_alignment(&[0.4]);
        assert_eq!(
            (one.align_f, one.align_f_stderr, one.align_f_ci95),
            (0.4, None, None)
        );
    }

    #[test]
    fn one_pair_has_no_interval_and_identical_sides_score_zero() {
        let s = estimate(&[0.5], &[0.5]);
        assert_eq!((s.score, s.stderr, s.ci95), (0.0, None, None));
        let z = estimate(&[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!(z.score_ratio, 0.0);
    }

    #[test]
    fn t_quantiles_match_tables() {
        assert!((t_quantile_975(1) - 12.706_204_736).abs() < 1e-6);
        assert!((t_quantile_975(4) - 2.776_445_105).abs() < 1e-6);
        assert!((t_quantile_975(1000) - 1.962_339_1).abs() < 1e-5);
    }

    fn s(f: f64, g: f64) -> ImageScore {
        estimate(&[f], &[g])
    }

    #[test]
    fn range_normalisation_divides_without_centring() {
        let set = [s(0.2, 0.5), s(0.4, 0.3), s(0.1, 0.2)];
        // raw: 0.3, -0.1, 0.1; range 0.4.
        let r = set_normalize(&set, SetNorm::Range);
        let want = [0.75, -0.25, 0.25];
        for (a, b) in r.iter().zip(want) {
            assert!(close(a.expect("defined"), b));
        }
        assert_eq!(set_normalize(&[s(0.2, 0.5)], SetNorm::Range), vec![None]);
    }

    #[test]
    fn max_normalisation_by_hand() {
        let set = [s(0.2, 0.5), s(0.4, 0.25)];
        // f/max: 0.5, 1.0; g/max: 1.0, 0.5; diff: 0.5, -0.5; / 0.5 -> 1, -1.
        let r = set_normalize(&set, SetNorm::Max);
        assert!(close(r[0].expect("defined"), 1.0) && close(r[1].expect("defined"), -1.0));
    }
}
