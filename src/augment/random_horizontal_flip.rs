//! `RandomHorizontalFlip(p)`: mirrors the image left to right with probability `p`.

use serde::{Deserialize, Serialize};

use super::{check_probability, Size, Transform};
use crate::pixels::Planes;
use crate::rng::Rng;

/// `RandomHorizontalFlip(p)`; torchvision's default `p` is 0.5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomHorizontalFlip {
    #[serde(default = "default_p")]
    pub p: f64,
}

fn default_p() -> f64 {
    0.5
}

impl Transform for RandomHorizontalFlip {
    type Params = ();

    fn p(&self) -> Option<f64> {
        Some(self.p)
    }

    fn make_params(&self, _: &Planes, _: &mut Rng) {}

    fn transform(&self, mut img: Planes, _: (), _: Size) -> Planes {
        horizontal(&mut img);
        img
    }

    fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)
    }
}

/// Mirrors every row in place.
pub fn horizontal(img: &mut Planes) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_each_row_of_each_channel() {
        let mut img = Planes {
            channels: 2,
            height: 2,
            width: 3,
            data: (0..12).map(|v| v as f32).collect(),
        };
        horizontal(&mut img);
        assert_eq!(
            img.data,
            vec![2., 1., 0., 5., 4., 3., 8., 7., 6., 11., 10., 9.]
        );
        horizontal(&mut img);
        assert_eq!(img.data, (0..12).map(|v| v as f32).collect::<Vec<_>>());
    }
}
