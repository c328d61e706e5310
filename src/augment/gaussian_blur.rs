//! `RandomApply([GaussianBlur(kernel_size, sigma)], p)`: a separable Gaussian with reflect
//! padding, as torchvision computes it, with `sigma` drawn per view.

use serde::{Deserialize, Serialize};

use super::{check_positive_range, check_probability, Size, Transform};
use crate::pixels::Planes;
use crate::rng::Rng;

/// `RandomApply([GaussianBlur(kernel_size, sigma)], p)`. `kernel_size`: odd, in pixels; absent,
/// about 10% of the image's shorter side, made odd as SimCLR's code does
/// (`2 * floor(floor(0.1 * side) / 2) + 1`: 3 at 28 and 32, 23 at 224, BYOL's). `sigma`:
/// the range the standard deviation is drawn from, in pixels, torchvision's (0.1, 2) by
/// default. `p`: 1 by default (torchvision's `GaussianBlur` always applies).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianBlur {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_size: Option<usize>,
    #[serde(default = "default_sigma")]
    pub sigma: [f64; 2],
    #[serde(default = "default_p")]
    pub p: f64,
}

/// torchvision's default `sigma`, (0.1, 2).
pub(crate) fn default_sigma() -> [f64; 2] {
    [0.1, 2.0]
}

fn default_p() -> f64 {
    1.0
}

/// The kernel size for an image whose shorter side is `side` pixels when none is given.
pub fn auto_kernel_size(side: usize) -> usize {
    (side / 10) / 2 * 2 + 1
}

impl Transform for GaussianBlur {
    /// The standard deviation, in pixels.
    type Params = f64;

    fn p(&self) -> Option<f64> {
        Some(self.p)
    }

    fn make_params(&self, _: &Planes, rng: &mut Rng) -> f64 {
        rng.uniform(self.sigma[0], self.sigma[1])
    }

    fn transform(&self, mut img: Planes, sigma: f64, _: Size) -> Planes {
        let k = self
            .kernel_size
            .unwrap_or_else(|| auto_kernel_size(img.height.min(img.width)));
        apply(&mut img, k, sigma);
        img
    }

    fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)?;
        if let Some(k) = self.kernel_size {
            if k == 0 || k.is_multiple_of(2) {
                return Err(format!("kernel_size = {k}: must be odd and positive"));
            }
        }
        check_positive_range("sigma", self.sigma)
    }
}

/// The normalised 1-D kernel torchvision builds for `kernel_size` and `sigma`.
pub fn kernel(kernel_size: usize, sigma: f64) -> Vec<f32> {
    let half = (kernel_size as f64 - 1.0) / 2.0;
    let raw: Vec<f64> = (0..kernel_size)
        .map(|i| {
            let x = i as f64 - half;
            (-0.5 * (x / sigma).powi(2)).exp()
        })
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|v| (v / sum) as f32).collect()
}

/// Index into [0, n) with reflection at the borders (`-1 -> 1`, `n -> n - 2`).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut m = i.rem_euclid(period);
    if m >= n as isize {
        m = period - m;
    }
    m as usize
}

/// Blurs `img` in place with an odd `kernel_size` and standard deviation `sigma` (pixels).
pub fn apply(img: &mut Planes, kernel_size: usize, sigma: f64) {
    let k = kernel(kernel_size, sigma);
    let half = (kernel_size / 2) as isize;
    let (h, w) = (img.height, img.width);
    let mut tmp = vec![0f32; h * w];
    for c in 0..img.channels {
        let p = img.plane_mut(c);
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0f32;
                for (t, kv) in k.iter().enumerate() {
                    acc += kv * p[y * w + reflect(x as isize + t as isize - half, w)];
                }
                tmp[y * w + x] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0f32;
                for (t, kv) in k.iter().enumerate() {
                    acc += kv * tmp[reflect(y as isize + t as isize - half, h) * w + x];
                }
                p[y * w + x] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_the_gaussian_by_hand() {
        // k=3, sigma=1: [e^-0.5, 1, e^-0.5] / (1 + 2 e^-0.5)
        let e = (-0.5f64).exp();
        let want = [
            e / (1.0 + 2.0 * e),
            1.0 / (1.0 + 2.0 * e),
            e / (1.0 + 2.0 * e),
        ];
        for (a, b) in kernel(3, 1.0).iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-7);
        }
    }

    #[test]
    fn the_automatic_kernel_is_simclrs_ten_percent_made_odd() {
        assert_eq!(auto_kernel_size(224), 23);
        assert_eq!(auto_kernel_size(96), 9);
        assert_eq!(auto_kernel_size(32), 3);
        assert_eq!(auto_kernel_size(28), 3);
        assert_eq!(auto_kernel_size(8), 1);
    }

    #[test]
    fn reflect_padding_mirrors_without_repeating_the_edge() {
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(-2, 5), 2);
        assert_eq!(reflect(5, 5), 3);
        assert_eq!(reflect(6, 5), 2);
        assert_eq!(reflect(2, 5), 2);
    }

    #[test]
    fn blur_of_an_impulse_is_the_kernel_and_constants_survive() {
        let mut img = Planes {
            channels: 1,
            height: 1,
            width: 5,
            data: vec![0.0, 0.0, 1.0, 0.0, 0.0],
        };
        // Height 1: the vertical pass reflects onto the same row, so it is the identity.
        apply(&mut img, 3, 1.0);
        let k = kernel(3, 1.0);
        assert!((img.data[1] - k[0]).abs() < 1e-6 && (img.data[2] - k[1]).abs() < 1e-6);
        let mut flat = Planes {
            channels: 1,
            height: 4,
            width: 4,
            data: vec![0.7; 16],
        };
        apply(&mut flat, 5, 1.5);
        assert!(flat.data.iter().all(|v| (v - 0.7).abs() < 1e-6));
    }
}
