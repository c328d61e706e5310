//! `RandomHorizontalFlip`.

use crate::pixels::Planes;

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
