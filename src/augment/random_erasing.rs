//! `RandomErasing(p, scale, ratio, value)` [Zhong et al. 2020, "Random Erasing Data
//! Augmentation"]: with probability `p`, a random rectangle of the image is filled with `value`,
//! with torchvision v2's parameter draw.
//!
//! torchvision usually erases after `Normalize`, where `value` 0 is the mean colour; here every
//! transform works on [0, 1] pixels before normalisation, so `value` is a pixel value and 0 is
//! black.

use serde::{Deserialize, Serialize};

use super::random_resized_crop::Window;
use super::{check_positive_range, check_probability, Size, Transform};
use crate::pixels::Planes;
use crate::rng::Rng;

/// `RandomErasing(p, scale, ratio, value)`. `scale`: the erased area as a fraction of the
/// image's, `ratio`: the rectangle's height / width (torchvision draws it that way round),
/// `value`: the fill, one pixel value in [0, 1] for every channel (torchvision's per-channel
/// and `"random"` fills are not supported). torchvision's defaults: p 0.5,
/// scale (0.02, 0.33), ratio (0.3, 3.3), value 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomErasing {
    #[serde(default = "default_p")]
    pub p: f64,
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    #[serde(default)]
    pub value: f64,
}

fn default_p() -> f64 {
    0.5
}

fn default_scale() -> [f64; 2] {
    [0.02, 0.33]
}

fn default_ratio() -> [f64; 2] {
    [0.3, 3.3]
}

impl Default for RandomErasing {
    fn default() -> Self {
        Self {
            p: default_p(),
            scale: default_scale(),
            ratio: default_ratio(),
            value: 0.0,
        }
    }
}

impl Transform for RandomErasing {
    /// The rectangle to fill; `None` when ten tries found none that fits (nothing is erased).
    type Params = Option<Window>;

    fn p(&self) -> Option<f64> {
        Some(self.p)
    }

    /// torchvision's `RandomErasing.make_params`: up to ten tries at an area
    /// `H·W·U(scale_min, scale_max)` and a ratio `exp(U(ln ratio_min, ln ratio_max))`,
    /// `h = round(√(area·ratio))`, `w = round(√(area/ratio))`; the first with `h < H` and
    /// `w < W` is placed uniformly at random.
    fn make_params(&self, img: &Planes, rng: &mut Rng) -> Option<Window> {
        let (height, width) = (img.height, img.width);
        let area = (height * width) as f64;
        let (log_lo, log_hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * rng.uniform(self.scale[0], self.scale[1]);
            let aspect = rng.uniform(log_lo, log_hi).exp();
            // Python's round() rounds half to even.
            let h = (target * aspect).sqrt().round_ties_even() as usize;
            let w = (target / aspect).sqrt().round_ties_even() as usize;
            if h < height && w < width {
                let top = rng.below((height - h + 1) as u64) as usize;
                let left = rng.below((width - w + 1) as u64) as usize;
                return Some(Window {
                    top,
                    left,
                    height: h,
                    width: w,
                });
            }
        }
        None
    }

    fn transform(&self, mut img: Planes, win: Option<Window>, _: Size) -> Planes {
        if let Some(win) = win {
            erase(&mut img, win, self.value as f32);
        }
        img
    }

    fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)?;
        if !(self.scale[0] >= 0.0 && self.scale[0] <= self.scale[1] && self.scale[1] <= 1.0) {
            return Err(format!("scale {:?}: need 0 <= min <= max <= 1", self.scale));
        }
        check_positive_range("ratio", self.ratio)?;
        if !(0.0..=1.0).contains(&self.value) {
            return Err(format!(
                "value = {}: a pixel value must lie in [0, 1]",
                self.value
            ));
        }
        Ok(())
    }
}

/// Fills the window of every channel with `value`, in place (torchvision's `F.erase`).
pub fn erase(img: &mut Planes, win: Window, value: f32) {
    let w = img.width;
    for c in 0..img.channels {
        let plane = img.plane_mut(c);
        for y in win.top..win.top + win.height {
            plane[y * w + win.left..y * w + win.left + win.width].fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::apply;

    fn image(c: usize, h: usize, w: usize) -> Planes {
        Planes {
            channels: c,
            height: h,
            width: w,
            data: (0..c * h * w)
                .map(|i| 0.5 + (i % 7) as f32 / 20.0)
                .collect(),
        }
    }

    const SIZE: Size = Size {
        height: 28,
        width: 32,
    };

    #[test]
    fn the_erased_area_stays_within_the_scale_bounds() {
        let t = RandomErasing {
            p: 1.0,
            scale: [0.1, 0.3],
            ratio: [0.5, 2.0],
            value: 0.0,
        };
        let img = image(3, 28, 32);
        let mut erased_views = 0;
        for seed in 0..500 {
            let out = apply(&t, img.clone(), SIZE, &mut Rng::from_seed(seed));
            // The source has no zeros: the zeros are the erased pixels, the same in every
            // channel, and form one rectangle.
            let zeros: Vec<usize> = (0..28 * 32).filter(|&i| out.data[i] == 0.0).collect();
            for c in 1..3 {
                assert!(zeros.iter().all(|&i| out.plane(c)[i] == 0.0));
            }
            if zeros.is_empty() {
                continue;
            }
            erased_views += 1;
            let (ys, xs): (Vec<usize>, Vec<usize>) = zeros.iter().map(|i| (i / 32, i % 32)).unzip();
            let h = ys.iter().max().unwrap_or(&0) - ys.iter().min().unwrap_or(&0) + 1;
            let w = xs.iter().max().unwrap_or(&0) - xs.iter().min().unwrap_or(&0) + 1;
            assert_eq!(h * w, zeros.len(), "a rectangle");
            assert!(h < 28 && w < 32);
            // Rounding each side to whole pixels moves the area a little outside the range.
            let frac = zeros.len() as f64 / (28.0 * 32.0);
            assert!(frac > 0.08 && frac < 0.34, "{frac}");
            // Everything else is untouched.
            let kept = (0..3 * 28 * 32)
                .filter(|&i| out.data[i] == img.data[i])
                .count();
            assert_eq!(kept, 3 * (28 * 32 - zeros.len()));
        }
        assert!(erased_views > 450, "{erased_views}");
    }

    #[test]
    fn probability_zero_is_the_identity_and_one_draw() {
        let t = RandomErasing {
            p: 0.0,
            ..RandomErasing::default()
        };
        let img = image(1, 28, 32);
        let mut rng = Rng::from_seed(3);
        assert_eq!(apply(&t, img.clone(), SIZE, &mut rng), img);
        let mut fresh = Rng::from_seed(3);
        fresh.next_f64();
        assert_eq!(rng.next_u64(), fresh.next_u64(), "only the p draw");
    }

    #[test]
    fn draws_are_deterministic_and_fill_with_value() {
        let t = RandomErasing {
            p: 1.0,
            value: 0.25,
            ..RandomErasing::default()
        };
        let img = image(3, 28, 32);
        let a = apply(&t, img.clone(), SIZE, &mut Rng::from_seed(9));
        assert_eq!(a, apply(&t, img.clone(), SIZE, &mut Rng::from_seed(9)));
        assert_ne!(a, apply(&t, img.clone(), SIZE, &mut Rng::from_seed(10)));
        assert!(a.data.contains(&0.25));
        assert_eq!((a.channels, a.height, a.width), (3, 28, 32));
    }

    #[test]
    fn an_area_that_never_fits_erases_nothing() {
        // The whole image is never strictly smaller than itself.
        let t = RandomErasing {
            p: 1.0,
            scale: [1.0, 1.0],
            ratio: [1.0, 1.0],
            value: 0.0,
        };
        let img = image(1, 8, 8);
        assert_eq!(apply(&t, img.clone(), SIZE, &mut Rng::from_seed(1)), img);
    }

    #[test]
    fn validation_refuses_torchvisions_bad_values() {
        assert!(RandomErasing::default().validate().is_ok());
        for bad in [
            RandomErasing {
                p: 1.5,
                ..RandomErasing::default()
            },
            RandomErasing {
                scale: [0.5, 1.2],
                ..RandomErasing::default()
            },
            RandomErasing {
                ratio: [0.0, 3.3],
                ..RandomErasing::default()
            },
            RandomErasing {
                value: 2.0,
                ..RandomErasing::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
