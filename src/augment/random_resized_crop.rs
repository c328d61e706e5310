//! `RandomResizedCrop(size, scale, ratio)`: torchvision's parameter draw, then an antialiased
//! bilinear resize to the model's size.

use serde::{Deserialize, Serialize};

use super::{check_positive_range, Size, Transform};
use crate::pixels::{crop_resize, Planes};
use crate::rng::Rng;

/// `RandomResizedCrop(size, scale, ratio)`; `size` is the model's input size. `scale`: the
/// crop's area as a fraction of the image's, `ratio`: its width / height.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
}

/// torchvision's default `scale`, (0.08, 1).
pub(crate) fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}

/// torchvision's default `ratio`, (3/4, 4/3).
pub(crate) fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self {
            scale: default_scale(),
            ratio: default_ratio(),
        }
    }
}

impl Transform for RandomResizedCrop {
    type Params = Window;

    fn sets_size(&self) -> bool {
        true
    }

    fn make_params(&self, img: &Planes, rng: &mut Rng) -> Window {
        draw_window(self, img.height, img.width, rng)
    }

    fn transform(&self, img: Planes, win: Window, size: Size) -> Planes {
        apply(&img, win, size.height, size.width)
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.scale[0] > 0.0 && self.scale[0] <= self.scale[1] && self.scale[1] <= 1.0) {
            return Err(format!("scale {:?}: need 0 < min <= max <= 1", self.scale));
        }
        check_positive_range("ratio", self.ratio)
    }
}

/// A crop window in pixels: top, left, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and aspect
/// ratio, then a centre crop clamped to the ratio range.
pub fn draw_window(spec: &RandomResizedCrop, height: usize, width: usize, rng: &mut Rng) -> Window {
    let area = (height * width) as f64;
    let (log_lo, log_hi) = (spec.ratio[0].ln(), spec.ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.uniform(spec.scale[0], spec.scale[1]);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        // Python's round() rounds half to even.
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if w > 0 && w <= width && h > 0 && h <= height {
            let top = rng.below((height - h + 1) as u64) as usize;
            let left = rng.below((width - w + 1) as u64) as usize;
            return Window {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < spec.ratio[0] {
        (
            width,
            ((width as f64 / spec.ratio[0]).round_ties_even() as usize).clamp(1, height),
        )
    } else if in_ratio > spec.ratio[1] {
        (
            ((height as f64 * spec.ratio[1]).round_ties_even() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    Window {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// Cuts the window and resizes it to `out_h x out_w`.
pub fn apply(img: &Planes, win: Window, out_h: usize, out_w: usize) -> Planes {
    crop_resize(img, win.top, win.left, win.height, win.width, out_h, out_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stay_inside_and_respect_scale_and_ratio() {
        let spec = RandomResizedCrop {
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
        };
        for seed in 0..2_000 {
            let mut rng = Rng::from_seed(seed);
            let w = draw_window(&spec, 28, 28, &mut rng);
            assert!(w.top + w.height <= 28 && w.left + w.width <= 28, "{w:?}");
            assert!(w.height > 0 && w.width > 0);
            let area = (w.height * w.width) as f64 / 784.0;
            // Rounding to whole pixels can move the area a little outside the range.
            assert!(area > 0.05 && area <= 1.0, "{w:?}");
        }
    }

    #[test]
    fn full_scale_with_unit_ratio_is_the_whole_image() {
        let spec = RandomResizedCrop {
            scale: [1.0, 1.0],
            ratio: [1.0, 1.0],
        };
        let mut rng = Rng::from_seed(1);
        assert_eq!(
            draw_window(&spec, 28, 28, &mut rng),
            Window {
                top: 0,
                left: 0,
                height: 28,
                width: 28
            }
        );
    }

    #[test]
    fn impossible_ratio_falls_back_to_a_clamped_centre_crop() {
        // A 10x40 image can never hold a crop of ratio <= 1 at 100% of its area.
        let spec = RandomResizedCrop {
            scale: [1.0, 1.0],
            ratio: [0.5, 1.0],
        };
        let mut rng = Rng::from_seed(5);
        assert_eq!(
            draw_window(&spec, 10, 40, &mut rng),
            Window {
                top: 0,
                left: 15,
                height: 10,
                width: 10
            }
        );
    }

    #[test]
    fn a_fixed_window_crops_and_resizes_by_hand() {
        // 4x4 ramp; window rows 1..3, cols 2..4 is [[6,7],[10,11]]; upscale to 4x4.
        let img = Planes {
            channels: 1,
            height: 4,
            width: 4,
            data: (0..16).map(|v| v as f32).collect(),
        };
        let out = apply(
            &img,
            Window {
                top: 1,
                left: 2,
                height: 2,
                width: 2,
            },
            2,
            2,
        );
        assert_eq!(out.data, vec![6.0, 7.0, 10.0, 11.0]);
        let up = apply(
            &img,
            Window {
                top: 1,
                left: 2,
                height: 2,
                width: 2,
            },
            4,
            4,
        );
        // Row 0 of the upscaled window: centres at 0.25, 0.75, 1.25, 1.75 between 6 and 7,
        // and vertically the same weights between the rows 6.. and 10...
        assert!((up.data[0] - 6.0).abs() < 1e-6);
        assert!((up.data[1] - 6.25).abs() < 1e-6);
        assert!((up.data[5] - (6.25 + 4.0 * 0.25)).abs() < 1e-6);
        assert!((up.data[15] - 11.0).abs() < 1e-6);
    }
}
