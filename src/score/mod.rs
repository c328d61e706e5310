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
