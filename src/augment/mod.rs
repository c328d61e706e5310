//! The training augmentations (docs/science.md#training-augmentations) as torchvision v2
//! builds them: each transform is one small type behind [`Transform`] (`make_params` draws its
//! random parameters, `transform` applies them), and a bundle's `augment` is a [`Compose`], an
//! ordered list of them, tagged by name in JSON (`{"type": "random_resized_crop", ...}`).
//!
//! Each view is a pure function of (seed, image identity, view index): every draw comes from
//! the view's counter-based [`Rng`], in list order.
//!
//! To add a transform: one file here with a type implementing [`Transform`] (serde-readable,
//! its parameters named as torchvision names them) and one line in the `registry!` below
//! (`"tag" => module::Type`, which also declares the module); then document it in
//! docs/bundle.md#augment.

#[macro_use]
mod registry;

mod compose;
mod legacy;

registry! {
    "random_resized_crop" => random_resized_crop::RandomResizedCrop,
    "resize" => resize::Resize,
    "random_horizontal_flip" => random_horizontal_flip::RandomHorizontalFlip,
    "color_jitter" => color_jitter::ColorJitter,
    "random_grayscale" => random_grayscale::RandomGrayscale,
    "gaussian_blur" => gaussian_blur::GaussianBlur,
    "random_solarize" => random_solarize::RandomSolarize,
    "random_erasing" => random_erasing::RandomErasing,
}

pub use compose::{Compose, PRESETS};

/// The name the manifest, the trainer's recipe and the audit summary give a [`Compose`].
pub type AugmentSpec = Compose;

use crate::error::{Error, Result};
use crate::pixels::{resize as resize_planes, Planes};
use crate::rng::Rng;

/// The pipeline's output size in pixels: the model's input height and width (the `size` that
/// torchvision's `RandomResizedCrop` and `Resize` take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub height: usize,
    pub width: usize,
}

/// One augmentation, as torchvision v2's `Transform`: [`Transform::make_params`] draws the
/// random parameters of one application, [`Transform::transform`] applies them.
///
/// Images are [`Planes`] `[C, H, W]` with values in [0, 1]; a transform keeps the channel
/// count and, unless it [sets the size](Transform::sets_size), the height and width.
pub trait Transform {
    /// What one draw decides (a crop window, jitter factors, a sigma...).
    type Params;

    /// The probability of applying the transform (torchvision's `p` of `RandomApply` and of
    /// the `Random*` transforms). When `Some`, one uniform number is drawn first and the
    /// transform is skipped (drawing nothing more) unless it is below `p`; `None`: always
    /// applied, nothing drawn for it.
    fn p(&self) -> Option<f64> {
        None
    }

    /// Whether the output is the pipeline's [`Size`] whatever the input's (crop, resize). A
    /// pipeline with no such transform resizes the image to the model's size first.
    fn sets_size(&self) -> bool {
        false
    }

    /// Draws the parameters of one application to `img` (torchvision's `make_params`).
    fn make_params(&self, img: &Planes, rng: &mut Rng) -> Self::Params;

    /// Applies drawn parameters (torchvision's `transform`); `size` is the pipeline's output.
    fn transform(&self, img: Planes, params: Self::Params, size: Size) -> Planes;

    /// Checks the parameters against the ranges torchvision accepts. The message names the
    /// parameter first (`p = 1.5: a probability must lie in [0, 1]`); [`Compose::validate`]
    /// prefixes it with the transform's place (`augment[2].`).
    fn validate(&self) -> std::result::Result<(), String>;
}

/// Applies `t` to `img` with `t`'s probability: the `p` draw, then `make_params`, then
/// `transform` (torchvision v2's `_RandomApplyTransform.forward`).
pub fn apply<T: Transform>(t: &T, img: Planes, size: Size, rng: &mut Rng) -> Planes {
    if let Some(p) = t.p() {
        if rng.next_f64() >= p {
            return img;
        }
    }
    let params = t.make_params(&img, rng);
    t.transform(img, params, size)
}

/// `p = {p}: a probability must lie in [0, 1]` unless it does.
pub(crate) fn check_probability(name: &str, p: f64) -> std::result::Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{name} = {p}: a probability must lie in [0, 1]"))
    }
}

/// A `[min, max]` range with `0 < min <= max` and a finite max (scale, ratio, sigma).
pub(crate) fn check_positive_range(name: &str, r: [f64; 2]) -> std::result::Result<(), String> {
    if r[0] > 0.0 && r[0] <= r[1] && r[1].is_finite() {
        Ok(())
    } else {
        Err(format!("{name} {r:?}: need 0 < min <= max"))
    }
}

/// Per-channel normalisation applied after augmentation: `(x - mean) / std`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    pub fn new(mean: Vec<f32>, std: Vec<f32>, channels: usize) -> Result<Self> {
        if mean.len() != channels || std.len() != channels {
            return Err(Error::Param(format!(
                "mean ({}) and std ({}) need one value per input channel ({channels})",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(Error::Param(format!("std {s} must be positive")));
        }
        Ok(Self { mean, std })
    }

    /// Writes the normalised planes into `out` (length C*H*W).
    pub fn write(&self, img: &Planes, out: &mut [f32]) {
        let n = img.height * img.width;
        for c in 0..img.channels {
            let (m, s) = (self.mean[c], 1.0 / self.std[c]);
            for (o, v) in out[c * n..(c + 1) * n].iter_mut().zip(img.plane(c)) {
                *o = (v - m) * s;
            }
        }
    }
}

/// Produces augmented views at the model's input size.
#[derive(Clone, Debug)]
pub struct Augmenter {
    pub spec: Compose,
    pub height: usize,
    pub width: usize,
}

impl Augmenter {
    /// # Errors
    /// [`Error::Param`] when a transform's parameters are out of range or the size is 0.
    pub fn new(spec: Compose, height: usize, width: usize) -> Result<Self> {
        spec.validate()?;
        if height == 0 || width == 0 {
            return Err(Error::Param("output size must be positive".into()));
        }
        Ok(Self {
            spec,
            height,
            width,
        })
    }

    /// The un-augmented image at the model's size (the "orig" of `orig-vs-aug`).
    pub fn original(&self, img: &Planes) -> Planes {
        if img.height == self.height && img.width == self.width {
            img.clone()
        } else {
            resize_planes(img, self.height, self.width)
        }
    }

    /// View number `view` of the image whose identity is `image_id`: the [`Compose`]'s
    /// transforms in order, after a resize to the model's size when none of them sets it.
    pub fn view(&self, img: &Planes, seed: u64, image_id: u64, view: u64) -> Planes {
        let mut rng = Rng::for_view(seed, image_id, view);
        let size = Size {
            height: self.height,
            width: self.width,
        };
        let mut out = if self.spec.sets_size() {
            img.clone()
        } else {
            self.original(img)
        };
        for step in &self.spec.transforms {
            out = step.apply(out, size, &mut rng);
        }
        debug_assert_eq!((out.height, out.width), (self.height, self.width));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image(channels: usize) -> Planes {
        let (h, w) = (20, 24);
        let data = (0..channels * h * w)
            .map(|i| ((i * 37) % 256) as f32 / 255.0)
            .collect();
        Planes {
            channels,
            height: h,
            width: w,
            data,
        }
    }

    #[test]
    fn identity_spec_returns_the_resized_image() {
        let aug = Augmenter::new(Compose::identity(), 20, 24).expect("valid");
        let img = test_image(3);
        assert_eq!(aug.view(&img, 1, 2, 3), img);
        let small = Augmenter::new(Compose::identity(), 10, 12).expect("valid");
        assert_eq!(small.view(&img, 1, 2, 3), small.original(&img));
    }

    #[test]
    fn views_are_pure_functions_of_seed_identity_and_index() {
        let aug = Augmenter::new(Compose::preset("byol").expect("preset"), 16, 16).expect("valid");
        let img = test_image(3);
        let a = aug.view(&img, 7, 11, 0);
        assert_eq!(a, aug.view(&img, 7, 11, 0));
        assert_ne!(a, aug.view(&img, 7, 11, 1));
        assert_ne!(a, aug.view(&img, 7, 11, 1 << 40));
        assert_ne!(a, aug.view(&img, 8, 11, 0));
        assert_ne!(a, aug.view(&img, 7, 12, 0));
        assert_eq!((a.channels, a.height, a.width), (3, 16, 16));
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn a_transform_before_the_crop_works_at_the_source_size() {
        // Flip (always) then crop the whole image: the mirrored image, at the model's size.
        let spec: Compose = serde_json::from_str(
            r#"[{"type": "random_horizontal_flip", "p": 1.0},
                {"type": "random_resized_crop", "scale": [1.0, 1.0], "ratio": [1.2, 1.2]}]"#,
        )
        .expect("list");
        let aug = Augmenter::new(spec, 20, 24).expect("valid");
        let img = test_image(1);
        let mut flipped = img.clone();
        random_horizontal_flip::horizontal(&mut flipped);
        let want = crate::pixels::crop_resize(&flipped, 0, 0, 20, 24, 20, 24);
        assert_eq!(aug.view(&img, 1, 2, 3), want);
    }

    #[test]
    fn normalize_writes_standardised_values_and_checks_lengths() {
        let n = Normalize::new(vec![0.5], vec![0.25], 1).expect("valid");
        let img = Planes {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.5, 1.0],
        };
        let mut out = [0.0; 2];
        n.write(&img, &mut out);
        assert_eq!(out, [0.0, 2.0]);
        assert!(Normalize::new(vec![0.5], vec![0.25], 3).is_err());
        assert!(Normalize::new(vec![0.5], vec![0.0], 1).is_err());
    }
}
