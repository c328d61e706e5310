//! Scoring options and the estimator applied to representations: K view pairs per image,
//! distances averaged over each side's encoders, then [`math::estimate`]. Views are made and
//! encoders run by [`crate::engine`].

pub mod calibrate;
pub mod math;
mod record;

use ndarray::Array2;
use serde::Serialize;

pub use math::{
    distance, estimate, estimate_alignment, set_normalize, Distance, ImageScore, RepNorm, SetNorm,
    ViewAlignment,
};
pub use record::{OneModelRecord, ScoreRecord};

/// How the two views of a pair are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewMode {
    /// Both views drawn from the augmentations (the definition).
    AugVsAug,
    /// The un-augmented image against one augmented view (the authors' script).
    OrigVsAug,
}

crate::choice!(ViewMode, "view mode", {
    AugVsAug = "aug-vs-aug" => "Both views drawn from the augmentations (the definition).",
    OrigVsAug = "orig-vs-aug" => "The un-augmented image against one augmented view (the authors' script).",
});

/// How each image is scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreOptions {
    /// View pairs per image (K).
    pub pairs: usize,
    /// Seed of the augmentations.
    pub seed: u64,
    pub mode: ViewMode,
    pub distance: Distance,
    pub normalize: RepNorm,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            pairs: 10,
            seed: 0,
            mode: ViewMode::AugVsAug,
            distance: Distance::L2,
            normalize: RepNorm::L2,
        }
    }
}

impl ScoreOptions {
    /// Views each image contributes: `2K`, or `K + 1` with the original.
    pub fn views_per_image(&self) -> usize {
        match self.mode {
            ViewMode::AugVsAug => 2 * self.pairs,
            ViewMode::OrigVsAug => self.pairs + 1,
        }
    }

    /// Indices (within an image's views) of the two members of view pair `k`.
    pub fn pair(&self, k: usize) -> (usize, usize) {
        match self.mode {
            ViewMode::AugVsAug => (2 * k, 2 * k + 1),
            ViewMode::OrigVsAug => (0, k + 1),
        }
    }
}

/// Per-pair distances of consecutive images' views (`images * K` values, image after image),
/// averaged over the encoders `reps` of one side; empty without encoders.
fn side_distances(opts: &ScoreOptions, reps: &[Array2<f32>]) -> Vec<f64> {
    let vpi = opts.views_per_image();
    let k = opts.pairs;
    let images = reps.first().map_or(0, |r| r.nrows() / vpi);
    let mut d = vec![0f64; images * k];
    let inv = 1.0 / reps.len().max(1) as f64;
    for r in reps {
        for (i, row) in d.chunks_exact_mut(k).enumerate() {
            for (p, dst) in row.iter_mut().enumerate() {
                let (a, b) = opts.pair(p);
                let (a, b) = (r.row(i * vpi + a), r.row(i * vpi + b));
                let (a, b) = (
                    a.as_slice().unwrap_or_default(),
                    b.as_slice().unwrap_or_default(),
                );
                *dst += inv * distance(a, b, opts.normalize, opts.distance);
            }
        }
    }
    d
}

/// The estimator from representations of consecutive images' views (laid out image after
/// image, `views_per_image` rows each, as [`crate::engine::ViewMaker`] writes them), one
/// matrix `[views, dim]` per encoder of each side: the per-pair distances are averaged over
/// each side's encoders, then [`estimate`] gives each image's score.
pub fn scores_from_representations(
    opts: &ScoreOptions,
    f: &[Array2<f32>],
    g: &[Array2<f32>],
) -> Vec<ImageScore> {
    let k = opts.pairs;
    let (d_f, d_g) = (side_distances(opts, f), side_distances(opts, g));
    d_f.chunks_exact(k)
        .zip(d_g.chunks_exact(k))
        .map(|(f, g)| estimate(f, g))
        .collect()
}

/// The alignment under `f` alone ([`estimate_alignment`]) from representations laid out as
/// for [`scores_from_representations`]: a bundle with no `g` (a one-model audit).
pub fn alignments_of_views(opts: &ScoreOptions, f: &[Array2<f32>]) -> Vec<ViewAlignment> {
    side_distances(opts, f)
        .chunks_exact(opts.pairs.max(1))
        .map(estimate_alignment)
        .collect()
}

/// One pool image's many-model estimate (docs/science.md#the-many-model-estimator): the
/// SSLMem estimator with the encoders that trained on the image as `f` and those that did not
/// as `g`, and its alignment under each encoder.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SubsampleScore {
    /// `align_f`: mean over the encoders that saw the image; `align_g`: over those that did
    /// not; `score`: out minus in, with its interval over the view pairs.
    pub score: ImageScore,
    /// Mean distance between paired views under each encoder, in the bundle's order.
    pub per_encoder: Vec<f64>,
}

/// Many-model estimates from representations laid out as for [`scores_from_representations`]
/// under every encoder (`reps[e]` is encoder `e`'s `[views, dim]`), with `member[i][e]`
/// whether encoder `e` trained on image `i`. `None` for an image that every encoder saw, or
/// none did: it has no estimate.
pub fn subsample_scores(
    opts: &ScoreOptions,
    reps: &[Array2<f32>],
    member: &[Vec<bool>],
) -> Vec<Option<SubsampleScore>> {
    let k = opts.pairs;
    // Per encoder: its per-pair distances, image after image.
    let each: Vec<Vec<f64>> = reps
        .iter()
        .map(|r| side_distances(opts, std::slice::from_ref(r)))
        .collect();
    member
        .iter()
        .enumerate()
        .map(|(i, saw)| {
            let side = |inside: bool| -> Option<Vec<f64>> {
                let chosen: Vec<&Vec<f64>> = each
                    .iter()
                    .zip(saw)
                    .filter(|(_, &m)| m == inside)
                    .map(|(d, _)| d)
                    .collect();
                if chosen.is_empty() {
                    return None;
                }
                let n = chosen.len() as f64;
                Some(
                    (0..k)
                        .map(|p| chosen.iter().map(|d| d[i * k + p]).sum::<f64>() / n)
                        .collect(),
                )
            };
            let (d_in, d_out) = (side(true)?, side(false)?);
            Some(SubsampleScore {
                score: estimate(&d_in, &d_out),
                per_encoder: each
                    .iter()
                    .map(|d| d[i * k..(i + 1) * k].iter().sum::<f64>() / k as f64)
                    .collect(),
            })
        })
        .collect()
}

/// Distances of one pair of images with no augmentation, averaged over each side's encoders.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairAlignment {
    pub d_f: f64,
    /// `None` for a one-model bundle, which has no `g`.
    pub d_g: Option<f64>,
}

/// Per-pair distances from representations of image pairs (rows a1, b1, a2, b2, ...), one
/// matrix `[2 * pairs, dim]` per encoder; each side's distances are averaged over its encoders.
pub fn alignments_from_representations(
    f: &[Array2<f32>],
    g: &[Array2<f32>],
    norm: RepNorm,
    dist: Distance,
) -> Vec<PairAlignment> {
    let side = |reps: &[Array2<f32>]| -> Vec<f64> {
        let pairs = reps.first().map_or(0, |r| r.nrows() / 2);
        let mut d = vec![0f64; pairs];
        for r in reps {
            for (p, dst) in d.iter_mut().enumerate() {
                let (a, b) = (r.row(2 * p), r.row(2 * p + 1));
                *dst += distance(
                    a.as_slice().unwrap_or_default(),
                    b.as_slice().unwrap_or_default(),
                    norm,
                    dist,
                ) / reps.len() as f64;
            }
        }
        d
    };
    let d_g = side(g);
    side(f)
        .into_iter()
        .enumerate()
        .map(|(p, d_f)| PairAlignment {
            d_f,
            d_g: d_g.get(p).copied(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Two images, K = 1 pair (views: image 0's a, b, then image 1's), three encoders whose
    /// representations make the distances easy to read: encoder e puts image i's views
    /// `d[e][i]` apart on a line (no normalisation, l2).
    #[test]
    fn the_many_model_estimate_is_out_minus_in_per_pair_with_each_encoders_alignment() {
        let opts = ScoreOptions {
            pairs: 1,
            normalize: RepNorm::None,
            ..ScoreOptions::default()
        };
        let d = [[0.1f32, 0.4], [0.3, 0.2], [0.5, 0.9]];
        let reps: Vec<Array2<f32>> = d
            .iter()
            .map(|e| array![[0.0], [e[0]], [0.0], [e[1]]])
            .collect();
        // Image 0: seen by encoders 0 and 1; image 1: by encoder 2 only; image 2 does not
        // exist here, but an image seen by every encoder has no estimate.
        let member = vec![vec![true, true, false], vec![false, false, true]];
        let got = subsample_scores(&opts, &reps, &member);
        let a = got[0].as_ref().expect("image 0");
        assert!(
            (a.score.align_f - 0.2).abs() < 1e-6,
            "in: mean of 0.1 and 0.3"
        );
        assert!((a.score.align_g - 0.5).abs() < 1e-6, "out: 0.5");
        assert!((a.score.score - 0.3).abs() < 1e-6);
        let per: Vec<f64> = a
            .per_encoder
            .iter()
            .map(|v| (v * 1e6).round() / 1e6)
            .collect();
        assert_eq!(per, [0.1, 0.3, 0.5]);
        let b = got[1].as_ref().expect("image 1");
        assert!((b.score.align_f - 0.9).abs() < 1e-6 && (b.score.align_g - 0.3).abs() < 1e-6);
        let all = subsample_scores(&opts, &reps[..2], &[vec![true, true]]);
        assert!(all[0].is_none(), "no encoder left out");
    }
}
