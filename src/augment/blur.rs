//! `GaussianBlur(kernel_size, sigma)`: a separable Gaussian with reflect padding, as
//! torchvision computes it.

use crate::pixels::Planes;

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
