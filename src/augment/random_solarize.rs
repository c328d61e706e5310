//! `RandomSolarize(threshold, p)` on [0, 1] pixels: with probability `p`, every value at or
//! above `threshold` becomes `1 - value`.

use serde::{Deserialize, Serialize};

use super::{check_probability, Size, Transform};
use crate::pixels::Planes;
use crate::rng::Rng;

/// `RandomSolarize(threshold, p)`; `threshold` in pixel units of [0, 1] (torchvision takes it
/// in the image's range and has no default; 0.5 here when absent), `p` 0.5 by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSolarize {
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default = "default_p")]
    pub p: f64,
}

/// 0.5, the threshold when none is given (BYOL's).
pub(crate) fn default_threshold() -> f64 {
    0.5
}

fn default_p() -> f64 {
    0.5
}

impl Transform for RandomSolarize {
    type Params = ();

    fn p(&self) -> Option<f64> {
        Some(self.p)
    }

    fn make_params(&self, _: &Planes, _: &mut Rng) {}

    fn transform(&self, mut img: Planes, _: (), _: Size) -> Planes {
        apply(&mut img, self.threshold as f32);
        img
    }

    fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)?;
        if self.threshold.is_finite() {
            Ok(())
        } else {
            Err(format!("threshold = {}: must be finite", self.threshold))
        }
    }
}

/// Inverts, in place, every value at or above `threshold`.
pub fn apply(img: &mut Planes, threshold: f32) {
    for v in &mut img.data {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_at_or_above_threshold_only() {
        let mut img = Planes {
            channels: 1,
            height: 1,
            width: 4,
            data: vec![0.1, 0.5, 0.49, 0.9],
        };
        apply(&mut img, 0.5);
        let want = [0.1, 0.5, 0.49, 0.1];
        for (a, b) in img.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", img.data);
        }
    }
}
