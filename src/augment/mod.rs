//! The training augmentations (docs/science.md#training-augmentations), with torchvision's
//! semantics, as one pipeline:
//! crop -> flip -> jitter (p) -> grayscale (p) -> blur (p) -> solarize (p) -> normalise.
//!
//! Each view is a pure function of (seed, image identity, view index). To add an
//! augmentation: a small module here, a field in [`AugmentSpec`], one step in [`Augmenter::view`].

pub mod blur;
pub mod color;
pub mod crop;
pub mod flip;
pub mod solarize;
mod spec;

pub use spec::{AugmentSpec, BlurSpec, CropSpec, JitterSpec, SolarizeSpec};

use crate::error::{Error, Result};
use crate::pixels::{resize, Planes};
use crate::rng::Rng;

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
    pub spec: AugmentSpec,
    pub height: usize,
    pub width: usize,
}

impl Augmenter {
    pub fn new(spec: AugmentSpec, height: usize, width: usize) -> Result<Self> {
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
            resize(img, self.height, self.width)
        }
    }

    /// View number `view` of the image whose identity is `image_id`.
    pub fn view(&self, img: &Planes, seed: u64, image_id: u64, view: u64) -> Planes {
        let mut rng = Rng::for_view(seed, image_id, view);
        let s = &self.spec;
        let mut out = match &s.crop {
            Some(c) => {
                let win = crop::draw_window(c, img.height, img.width, &mut rng);
                crop::apply(img, win, self.height, self.width)
            }
            None => self.original(img),
        };
        if rng.next_f64() < s.flip_p {
            flip::horizontal(&mut out);
        }
        if let Some(j) = &s.jitter {
            if rng.next_f64() < j.p {
                let d = color::draw(j, &mut rng);
                color::apply(&mut out, &d);
            }
        }
        if rng.next_f64() < s.grayscale_p {
            color::grayscale(&mut out);
        }
        if let Some(b) = &s.blur {
            if rng.next_f64() < b.p {
                let sigma = rng.uniform(b.sigma[0], b.sigma[1]);
                blur::apply(&mut out, b.kernel_size, sigma);
            }
        }
        if let Some(z) = &s.solarize {
            if rng.next_f64() < z.p {
                solarize::apply(&mut out, z.threshold as f32);
            }
        }
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
        let aug = Augmenter::new(AugmentSpec::identity(), 20, 24).expect("valid");
        let img = test_image(3);
        assert_eq!(aug.view(&img, 1, 2, 3), img);
    }

    #[test]
    fn views_are_pure_functions_of_seed_identity_and_index() {
        let mut spec = AugmentSpec::simclr();
        spec.blur = Some(BlurSpec {
            kernel_size: 3,
            sigma: [0.1, 2.0],
            p: 0.5,
        });
        spec.solarize = Some(SolarizeSpec {
            threshold: 0.5,
            p: 0.2,
        });
        let aug = Augmenter::new(spec, 16, 16).expect("valid");
        let img = test_image(3);
        let a = aug.view(&img, 7, 11, 0);
        assert_eq!(a, aug.view(&img, 7, 11, 0));
        assert_ne!(a, aug.view(&img, 7, 11, 1));
        assert_ne!(a, aug.view(&img, 8, 11, 0));
        assert_ne!(a, aug.view(&img, 7, 12, 0));
        assert_eq!((a.channels, a.height, a.width), (3, 16, 16));
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
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
