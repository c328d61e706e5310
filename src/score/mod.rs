//! Scoring: K view pairs per image, the same views through every `f` and `g` encoder in
//! batches, and the estimator of [`math`]. Augmentation of the next batch overlaps with
//! inference of the current one.

pub mod math;

use std::sync::mpsc;

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use math::{distance, estimate, set_normalize, Distance, ImageScore, RepNorm, SetNorm};

use crate::augment::{Augmenter, Normalize};
use crate::bundle::{Bundle, InputSpec};
use crate::error::{Error, Result};
use crate::pixels::{Planes, SourceImage};
use crate::runtime::Encoder;

/// How the two views of a pair are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ViewMode {
    /// Both views drawn from the augmentations (the definition).
    AugVsAug,
    /// The un-augmented image against one augmented view (the authors' script).
    OrigVsAug,
}

#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// View pairs per image (K).
    pub pairs: usize,
    pub seed: u64,
    pub mode: ViewMode,
    pub distance: Distance,
    pub normalize: RepNorm,
    /// Views per inference batch.
    pub batch_size: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            pairs: 10,
            seed: 0,
            mode: ViewMode::AugVsAug,
            distance: Distance::L2,
            normalize: RepNorm::L2,
            batch_size: 256,
        }
    }
}

/// Scores images against a loaded bundle.
pub struct Scorer<'b> {
    bundle: &'b Bundle,
    augmenter: Augmenter,
    norm: Normalize,
    opts: ScoreOptions,
}

/// One batch of views ready for inference: which images, and their views, row-major.
struct ViewBatch {
    first: usize,
    images: usize,
    data: Vec<f32>,
}

impl<'b> Scorer<'b> {
    pub fn new(bundle: &'b Bundle, opts: ScoreOptions) -> Result<Self> {
        if opts.pairs == 0 {
            return Err(Error::Param("--pairs must be at least 1".into()));
        }
        if opts.batch_size == 0 {
            return Err(Error::Param("--batch-size must be at least 1".into()));
        }
        let i = &bundle.manifest.input;
        let augmenter = Augmenter::new(bundle.manifest.augment(), i.height, i.width)?;
        let norm = Normalize::new(i.mean.clone(), i.std.clone(), i.channels)?;
        Ok(Self {
            bundle,
            augmenter,
            norm,
            opts,
        })
    }

    pub fn options(&self) -> &ScoreOptions {
        &self.opts
    }

    /// Views each image contributes: 2K, or K + 1 with the original.
    pub fn views_per_image(&self) -> usize {
        match self.opts.mode {
            ViewMode::AugVsAug => 2 * self.opts.pairs,
            ViewMode::OrigVsAug => self.opts.pairs + 1,
        }
    }

    fn view_len(&self) -> usize {
        let i = &self.bundle.manifest.input;
        i.channels * i.height * i.width
    }

    /// Writes the normalised views of one image into `out` (views_per_image * C*H*W).
    /// View `v` depends only on (seed, image identity, v).
    pub fn write_views(&self, img: &SourceImage, out: &mut [f32]) {
        let planes: Planes = img.to_planes();
        let id = img.identity();
        let len = self.view_len();
        let seed = self.opts.seed;
        match self.opts.mode {
            ViewMode::AugVsAug => {
                for (v, dst) in out.chunks_exact_mut(len).enumerate() {
                    self.norm
                        .write(&self.augmenter.view(&planes, seed, id, v as u64), dst);
                }
            }
            ViewMode::OrigVsAug => {
                let mut chunks = out.chunks_exact_mut(len);
                if let Some(dst) = chunks.next() {
                    self.norm.write(&self.augmenter.original(&planes), dst);
                }
                for (v, dst) in chunks.enumerate() {
                    self.norm
                        .write(&self.augmenter.view(&planes, seed, id, v as u64), dst);
                }
            }
        }
    }

    /// Indices (within an image's views) of the two members of pair `k`.
    fn pair(&self, k: usize) -> (usize, usize) {
        match self.opts.mode {
            ViewMode::AugVsAug => (2 * k, 2 * k + 1),
            ViewMode::OrigVsAug => (0, k + 1),
        }
    }

    fn check_images(&self, images: &[SourceImage]) -> Result<()> {
        let c = self.bundle.manifest.input.channels;
        match images.iter().position(|im| im.channels != c) {
            Some(i) => Err(Error::Param(format!(
                "image {i} has {} channels, the model takes {c}",
                images[i].channels
            ))),
            None => Ok(()),
        }
    }

    /// Scores `images`, calling `progress(n)` after each batch of `n` images.
    pub fn score(
        &self,
        images: &[SourceImage],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<ImageScore>> {
        self.check_images(images)?;
        let vpi = self.views_per_image();
        let per_batch = (self.opts.batch_size / vpi).max(1);
        let len = self.view_len();
        let mut results = Vec::with_capacity(images.len());
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = mpsc::sync_channel::<ViewBatch>(1);
            scope.spawn(move || {
                for (b, chunk) in images.chunks(per_batch).enumerate() {
                    let mut data = vec![0f32; chunk.len() * vpi * len];
                    data.par_chunks_mut(vpi * len)
                        .zip(chunk.par_iter())
                        .for_each(|(dst, img)| self.write_views(img, dst));
                    if tx
                        .send(ViewBatch {
                            first: b * per_batch,
                            images: chunk.len(),
                            data,
                        })
                        .is_err()
                    {
                        return; // The consumer stopped on an error.
                    }
                }
            });
            for batch in rx {
                results.extend(self.score_batch(&batch)?);
                progress(batch.images);
                debug_assert_eq!(results.len(), batch.first + batch.images);
            }
            Ok(())
        })?;
        Ok(results)
    }

    /// Runs one batch through every encoder and returns each image's per-pair distances.
    fn score_batch(&self, batch: &ViewBatch) -> Result<Vec<ImageScore>> {
        let n = batch.images * self.views_per_image();
        let f = (self.bundle.f.iter())
            .map(|e| self.embed(e, &batch.data, n))
            .collect::<Result<Vec<_>>>()?;
        let g = (self.bundle.g.iter())
            .map(|e| self.embed(e, &batch.data, n))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.scores_from_representations(&f, &g))
    }

    /// The estimator from representations of consecutive images' views (as laid out by
    /// [`Scorer::write_views`]), one matrix per encoder of each side. The command line and
    /// the HTTP service both score through here.
    pub fn scores_from_representations(
        &self,
        f: &[Array2<f32>],
        g: &[Array2<f32>],
    ) -> Vec<ImageScore> {
        let vpi = self.views_per_image();
        let k = self.opts.pairs;
        let images = f.first().map_or(0, |r| r.nrows() / vpi);
        let side = |reps: &[Array2<f32>]| -> Vec<f64> {
            let mut d = vec![0f64; images * k];
            let inv = 1.0 / reps.len() as f64;
            for r in reps {
                for (i, row) in d.chunks_exact_mut(k).enumerate() {
                    for (p, dst) in row.iter_mut().enumerate() {
                        let (a, b) = self.pair(p);
                        let (a, b) = (r.row(i * vpi + a), r.row(i * vpi + b));
                        let (a, b) = (
                            a.as_slice().unwrap_or_default(),
                            b.as_slice().unwrap_or_default(),
                        );
                        *dst += inv * distance(a, b, self.opts.normalize, self.opts.distance);
                    }
                }
            }
            d
        };
        let (d_f, d_g) = (side(f), side(g));
        d_f.chunks_exact(k)
            .zip(d_g.chunks_exact(k))
            .map(|(f, g)| estimate(f, g))
            .collect()
    }

    fn embed(&self, enc: &Encoder, data: &[f32], n: usize) -> Result<Array2<f32>> {
        let i = &self.bundle.manifest.input;
        let reps = enc.embed(
            data.to_vec(),
            [n, i.channels, i.height, i.width],
            &self.bundle.manifest.representation.output,
        )?;
        if reps.nrows() != n || !reps.is_standard_layout() {
            return Err(Error::Model {
                model: enc.path.display().to_string(),
                reason: format!("returned {} representations for {n} views", reps.nrows()),
            });
        }
        Ok(reps)
    }
}

/// Distances of one pair of images with no augmentation, averaged over each side's encoders.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairAlignment {
    pub d_f: f64,
    pub d_g: f64,
}

/// The normalised input tensor of image pairs for `align` (a1, b1, a2, b2, ...): every image
/// must already be the model's input size and channels.
pub fn align_input(input: &InputSpec, pairs: &[(SourceImage, SourceImage)]) -> Result<Vec<f32>> {
    let normalize = Normalize::new(input.mean.clone(), input.std.clone(), input.channels)?;
    let want = (input.channels, input.height, input.width);
    let len = input.channels * input.height * input.width;
    let mut data = vec![0f32; 2 * pairs.len() * len];
    for (n, (dst, (a, b))) in data.chunks_exact_mut(2 * len).zip(pairs).enumerate() {
        for im in [a, b] {
            if (im.channels, im.height, im.width) != want {
                return Err(Error::Param(format!(
                    "pair {}: image is {}x{}x{}, the model takes {}x{}x{} (align does not resize)",
                    n + 1,
                    im.channels,
                    im.height,
                    im.width,
                    want.0,
                    want.1,
                    want.2
                )));
            }
        }
        let (da, db) = dst.split_at_mut(len);
        normalize.write(&a.to_planes(), da);
        normalize.write(&b.to_planes(), db);
    }
    Ok(data)
}

/// Per-pair distances from representations of `align_input`'s rows, one matrix per encoder.
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
    side(f)
        .into_iter()
        .zip(side(g))
        .map(|(d_f, d_g)| PairAlignment { d_f, d_g })
        .collect()
}

/// `sslmem align`: each pair must already be the model's input size and channels.
pub fn align_pairs(
    bundle: &Bundle,
    pairs: &[(SourceImage, SourceImage)],
    norm: RepNorm,
    dist: Distance,
) -> Result<Vec<PairAlignment>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let i = &bundle.manifest.input;
    let data = align_input(i, pairs)?;
    let shape = [2 * pairs.len(), i.channels, i.height, i.width];
    let out = &bundle.manifest.representation.output;
    let embed = |encoders: &[Encoder]| -> Result<Vec<Array2<f32>>> {
        encoders
            .iter()
            .map(|e| e.embed(data.clone(), shape, out))
            .collect()
    };
    Ok(alignments_from_representations(
        &embed(&bundle.f)?,
        &embed(&bundle.g)?,
        norm,
        dist,
    ))
}
