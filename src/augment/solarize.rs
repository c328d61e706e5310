//! `RandomSolarize`: pixels at or above the threshold are inverted.

use crate::pixels::Planes;

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
