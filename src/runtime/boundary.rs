//! The boundary between sslmem's images and a model's tensors: how an input is laid out
//! (channels first or last) and of what element type (float32 as is, float16 and uint8 cast
//! here), how float outputs are read back as float32, and how a token output is pooled into
//! one representation per image.
//!
//! Inside sslmem every batch is float32 `[N, C, H, W]` and every representation float32; the
//! casts and transposes below are the only places a model's own formats are seen.

use ndarray::{Array2, ArrayD};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Element types an encoder's input may have: float32 is fed as is, float16 is cast at the
/// boundary, uint8 gets the normalised values rounded to bytes (see docs/bundle.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    #[default]
    Float32,
    Float16,
    Uint8,
}

/// Memory layout of an image input: channels first (`[N, C, H, W]`, PyTorch's) or channels
/// last (`[N, H, W, C]`, TensorFlow's and tf2onnx's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

crate::choice!(Layout, "layout", {
    Nchw = "nchw" => "[batch, channels, height, width] (PyTorch's).",
    Nhwc = "nhwc" => "[batch, height, width, channels] (TensorFlow's).",
});

/// How a token output `[batch, tokens, dim]` (ViT, MAE) becomes one representation per image:
/// the first (CLS) token, the mean over tokens, or every token concatenated (`[batch,
/// tokens * dim]`, as the MAE authors' linear-probe code reads the encoder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Cls,
    Mean,
    Flatten,
}

crate::choice!(Pooling, "pooling", {
    Cls = "cls" => "The first token (a class token).",
    Mean = "mean" => "The mean over tokens.",
    Flatten = "flatten" => "All tokens, concatenated.",
});

/// How a session's input is fed and its outputs read, from the bundle's manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Boundary {
    pub layout: Layout,
    pub pooling: Option<Pooling>,
}

/// `[n, c, h, w]` row-major to `[n, h, w, c]`.
pub(super) fn to_channels_last(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    out[((b * h + y) * w + xx) * c + ch] = x[((b * c + ch) * h + y) * w + xx];
                }
            }
        }
    }
    out
}

/// float32 to float16, rounded to nearest (ties to even), as `half::f16::from_f32` does;
/// values beyond float16's range (±65504) become infinite.
pub(super) fn to_f16(x: &[f32]) -> Vec<half::f16> {
    x.iter().map(|&v| half::f16::from_f32(v)).collect()
}

/// The normalised values (with mean 0 and std 1/255: the pixel bytes) rounded to bytes,
/// half away from zero, saturating at 0 and 255 (NaN becomes 0).
pub(super) fn to_u8(x: &[f32]) -> Vec<u8> {
    x.iter()
        .map(|&v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// An output tensor as float32: float32 as is, float16 widened (exactly).
///
/// # Errors
/// [`Error::Runtime`] for any other element type, or when the tensor cannot be read.
pub(super) fn output_f32(name: &str, v: &ort::value::DynValue) -> Result<ArrayD<f32>> {
    match v.dtype().tensor_type() {
        Some(ort::value::TensorElementType::Float32) => {
            Ok(v.try_extract_array::<f32>()?.to_owned())
        }
        Some(ort::value::TensorElementType::Float16) => {
            Ok(v.try_extract_array::<half::f16>()?.mapv(half::f16::to_f32))
        }
        other => Err(Error::Runtime(format!(
            "output '{name}' is {}; a representation must be float32 or float16",
            other.map_or_else(|| "not a tensor".into(), element_name)
        ))),
    }
}

/// An ONNX element type in ONNX's lower-case spelling (`float32`, `float16`, `uint8`, ...).
pub(super) fn element_name(t: ort::value::TensorElementType) -> String {
    format!("{t:?}").to_lowercase()
}

/// Pools token outputs `[batch, tokens, dim]` into `[batch, dim]` (`[batch, tokens * dim]`
/// for [`Pooling::Flatten`]). `tokens` must be at least 1.
pub fn pool(t: &ndarray::Array3<f32>, how: Pooling) -> Array2<f32> {
    let (n, tokens, dim) = t.dim();
    match how {
        Pooling::Cls => t.index_axis(ndarray::Axis(1), 0).to_owned(),
        Pooling::Mean => t
            .mean_axis(ndarray::Axis(1))
            .unwrap_or_else(|| Array2::zeros((n, dim))),
        Pooling::Flatten => {
            let flat: Vec<f32> = t.iter().copied().collect();
            Array2::from_shape_vec((n, tokens * dim), flat)
                .unwrap_or_else(|_| Array2::zeros((n, tokens * dim)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_moves_each_value_to_its_nhwc_place() {
        // [n=2, c=3, h=2, w=2], values numbered in NCHW order.
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let y = to_channels_last(&x, [2, 3, 2, 2]);
        for b in 0..2 {
            for c in 0..3 {
                for h in 0..2 {
                    for w in 0..2 {
                        let nchw = ((b * 3 + c) * 2 + h) * 2 + w;
                        let nhwc = ((b * 2 + h) * 2 + w) * 3 + c;
                        assert_eq!(y[nhwc], x[nchw]);
                    }
                }
            }
        }
    }

    #[test]
    fn pooling_reads_tokens_as_documented() {
        // 2 images, 3 tokens, 2 dims: token t of image b is [10b + t, -(10b + t)].
        let t = ndarray::Array3::from_shape_fn((2, 3, 2), |(b, tok, d)| {
            let v = (10 * b + tok) as f32;
            if d == 0 {
                v
            } else {
                -v
            }
        });
        assert_eq!(pool(&t, Pooling::Cls).row(1).to_vec(), [10.0, -10.0]);
        assert_eq!(pool(&t, Pooling::Mean).row(1).to_vec(), [11.0, -11.0]);
        let flat = pool(&t, Pooling::Flatten);
        assert_eq!(flat.dim(), (2, 6));
        assert_eq!(flat.row(0).to_vec(), [0.0, -0.0, 1.0, -1.0, 2.0, -2.0]);
    }

    #[test]
    fn bytes_are_rounded_and_saturated() {
        let x = [-3.0, 0.4, 0.5, 1.5, 254.6, 300.0, f32::NAN];
        assert_eq!(to_u8(&x), [0, 0, 1, 2, 255, 255, 0]);
    }

    #[test]
    fn float16_rounds_to_nearest_and_overflows_to_infinity() {
        let y = to_f16(&[1.0, 1.0 + 1.0 / 2048.0, 70_000.0]);
        assert_eq!(y[0].to_f32(), 1.0);
        // Half of float16's step at 1 (2^-10) rounds to the even neighbour, 1.
        assert_eq!(y[1].to_f32(), 1.0);
        assert!(y[2].to_f32().is_infinite());
    }
}
