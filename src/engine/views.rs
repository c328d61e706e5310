//! Preprocessing: the only code that turns decoded images into the encoders' input tensor.
//!
//! The policy, for every front end:
//! - **score**: each image gives `2K` augmented views (`aug-vs-aug`) or the un-augmented image
//!   and `K` views (`orig-vs-aug`), drawn with the bundle's training augmentations. The
//!   random resized crop produces the model's input size from any image size. View `v` of an
//!   image depends only on (seed, the image's pixels, `v`): see [`crate::rng`].
//! - **embed** ([`Preprocess::Resize`]): the un-augmented image, resized (bilinear) to the
//!   model's input size when it is not that size already.
//! - **align** ([`Preprocess::Exact`]): the un-augmented image, which must already be the
//!   model's size: align compares the pixels it is given, and a resize would change them.
//!
//! Every image is first decoded to the model's channel count (see [`crate::pixels::decode`]);
//! then each view is normalised with the bundle's per-channel mean and std.

use rayon::prelude::*;

use crate::augment::{AugmentSpec, Augmenter, Normalize};
use crate::bundle::InputSpec;
use crate::error::{Error, Result};
use crate::pixels::{Planes, SourceImage};
use crate::score::{ScoreOptions, ViewMode};

/// How an un-augmented image becomes the model's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// Resize to the model's input size when the image is another size.
    Resize,
    /// Refuse an image that is not the model's input size.
    Exact,
}

/// Makes the views of images for one set of scoring options.
pub struct ViewMaker {
    augmenter: Augmenter,
    norm: Normalize,
    opts: ScoreOptions,
    view_len: usize,
}

impl ViewMaker {
    /// # Errors
    /// [`Error::Param`] when K is 0 or the augmentations or normalisation do not fit the input.
    pub fn new(input: &InputSpec, augment: AugmentSpec, opts: &ScoreOptions) -> Result<Self> {
        if opts.pairs == 0 {
            return Err(Error::Param(
                "K (view pairs per image) must be at least 1".into(),
            ));
        }
        Ok(Self {
            augmenter: Augmenter::new(augment, input.height, input.width)?,
            norm: Normalize::new(input.mean.clone(), input.std.clone(), input.channels)?,
            opts: opts.clone(),
            view_len: input.channels * input.height * input.width,
        })
    }

    /// Views each image contributes: `2K`, or `K + 1` with the original.
    pub fn views_per_image(&self) -> usize {
        self.opts.views_per_image()
    }

    /// Writes the normalised views of one image into `out` (`views_per_image * C*H*W`
    /// values, row-major `[view, C, H, W]`).
    pub fn write_views(&self, img: &SourceImage, out: &mut [f32]) {
        let planes: Planes = img.to_planes();
        let id = img.identity();
        let seed = self.opts.seed;
        let mut chunks = out.chunks_exact_mut(self.view_len);
        if self.opts.mode == ViewMode::OrigVsAug {
            if let Some(dst) = chunks.next() {
                self.norm.write(&self.augmenter.original(&planes), dst);
            }
        }
        for (v, dst) in chunks.enumerate() {
            self.norm
                .write(&self.augmenter.view(&planes, seed, id, v as u64), dst);
        }
    }

    /// The views of every image, image after image, made in parallel.
    pub fn views(&self, images: &[SourceImage]) -> Vec<f32> {
        let per_image = self.views_per_image() * self.view_len;
        let mut data = vec![0f32; images.len() * per_image];
        data.par_chunks_mut(per_image)
            .zip(images.par_iter())
            .for_each(|(dst, img)| self.write_views(img, dst));
        data
    }
}

/// The normalised un-augmented images, `[n, C, H, W]` row-major.
///
/// # Errors
/// With [`Preprocess::Exact`], [`Error::Param`] naming the first image that is not the
/// model's size.
pub fn originals(input: &InputSpec, images: &[SourceImage], how: Preprocess) -> Result<Vec<f32>> {
    let want = (input.channels, input.height, input.width);
    if how == Preprocess::Exact {
        if let Some((n, im)) = images
            .iter()
            .enumerate()
            .find(|(_, im)| (im.channels, im.height, im.width) != want)
        {
            return Err(Error::Param(format!(
                "image {}: is {}x{}x{}, the model takes {}x{}x{} (align does not resize)",
                n, im.channels, im.height, im.width, want.0, want.1, want.2
            )));
        }
    }
    let aug = Augmenter::new(AugmentSpec::identity(), input.height, input.width)?;
    let norm = Normalize::new(input.mean.clone(), input.std.clone(), input.channels)?;
    let len = input.channels * input.height * input.width;
    let mut data = vec![0f32; images.len() * len];
    data.par_chunks_mut(len)
        .zip(images.par_iter())
        .for_each(|(dst, img)| norm.write(&aug.original(&img.to_planes()), dst));
    Ok(data)
}

/// Fails when an image's channel count is not the model's.
pub fn check_channels(input: &InputSpec, images: &[SourceImage]) -> Result<()> {
    let c = input.channels;
    match images.iter().position(|im| im.channels != c) {
        Some(i) => Err(Error::Param(format!(
            "image {i} has {} channels, the model takes {c}",
            images[i].channels
        ))),
        None => Ok(()),
    }
}
