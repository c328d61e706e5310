//! `Resize(size)`: the whole image, resized (antialiased bilinear) to the model's size; an
//! image already that size is left as it is.

use serde::{Deserialize, Serialize};

use super::{Size, Transform};
use crate::pixels::{resize, Planes};
use crate::rng::Rng;

/// `Resize(size)` with `size` the model's input size; it has no parameters of its own. A
/// list without a crop or a resize starts with one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {}

impl Transform for Resize {
    type Params = ();

    fn sets_size(&self) -> bool {
        true
    }

    fn make_params(&self, _: &Planes, _: &mut Rng) {}

    fn transform(&self, img: Planes, _: (), size: Size) -> Planes {
        if (img.height, img.width) == (size.height, size.width) {
            img
        } else {
            resize(&img, size.height, size.width)
        }
    }

    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizes_to_the_size_and_leaves_that_size_alone() {
        let img = Planes {
            channels: 1,
            height: 2,
            width: 2,
            data: vec![0.0, 0.25, 0.5, 1.0],
        };
        let size = Size {
            height: 2,
            width: 2,
        };
        assert_eq!(Resize {}.transform(img.clone(), (), size), img);
        let big = Size {
            height: 4,
            width: 3,
        };
        let out = Resize {}.transform(img.clone(), (), big);
        assert_eq!(out, resize(&img, 4, 3));
        assert_eq!((out.height, out.width), (4, 3));
    }
}
