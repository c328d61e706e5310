//! `RandomGrayscale(p)`: with probability `p`, every channel becomes the luma (3 channels stay
//! 3 channels); one-channel images are left as they are.

use serde::{Deserialize, Serialize};

use super::{check_probability, Size, Transform};
use crate::pixels::Planes;
use crate::rng::Rng;

/// torchvision's grayscale weights for tensors (ITU-R BT.601 luma).
const GREY: [f32; 3] = [0.2989, 0.587, 0.114];

/// `RandomGrayscale(p)`; torchvision's default `p` is 0.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomGrayscale {
    #[serde(default = "default_p")]
    pub p: f64,
}

fn default_p() -> f64 {
    0.1
}

impl Transform for RandomGrayscale {
    type Params = ();

    fn p(&self) -> Option<f64> {
        Some(self.p)
    }

    fn make_params(&self, _: &Planes, _: &mut Rng) {}

    fn transform(&self, mut img: Planes, _: (), _: Size) -> Planes {
        grayscale(&mut img);
        img
    }

    fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)
    }
}

/// The luma plane `0.2989 R + 0.587 G + 0.114 B` of a 3-channel image (`[H*W]`), or the
/// values of a 1-channel one.
pub(crate) fn luma(img: &Planes) -> Vec<f32> {
    if img.channels == 1 {
        return img.data.clone();
    }
    let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((r, g), b)| GREY[0] * r + GREY[1] * g + GREY[2] * b)
        .collect()
}

/// Replaces every channel with the luma, in place (3 channels stay 3 channels).
pub fn grayscale(img: &mut Planes) {
    if img.channels != 3 {
        return;
    }
    let grey = luma(img);
    for c in 0..3 {
        img.plane_mut(c).copy_from_slice(&grey);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn grayscale_uses_torchvision_weights_and_one_channel_is_untouched() {
        // Two pixels, red and (0.2, 0.4, 0.6), channels first.
        let mut img = Planes {
            channels: 3,
            height: 1,
            width: 2,
            data: vec![1.0, 0.2, 0.0, 0.4, 0.0, 0.6],
        };
        grayscale(&mut img);
        let g1 = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6;
        assert!(close(&img.data, &[0.2989, g1, 0.2989, g1, 0.2989, g1]));
        let mut one = Planes {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.2, 0.6],
        };
        grayscale(&mut one);
        assert_eq!(one.data, vec![0.2, 0.6]);
    }
}
