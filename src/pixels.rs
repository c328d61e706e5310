//! Images as the scorer sees them: decoding with limits, conversion to the model's
//! channel count, and planar `f32` pixels in [0, 1] with separable resampling.

use std::io::Cursor;

use image::{DynamicImage, ImageReader};

use crate::error::InputError;
use crate::rng::content_hash;

/// Limits on what the decoder accepts, to keep one bad file from exhausting memory.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest `width * height` accepted.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
        }
    }
}

/// An 8-bit image already converted to the model's channel count; planar (CHW).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl SourceImage {
    /// Wraps planar 8-bit data; the length must match the shape.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        data: Vec<u8>,
    ) -> Result<Self, InputError> {
        if channels == 0 || height == 0 || width == 0 {
            return Err(InputError::Empty);
        }
        if data.len() != channels * height * width {
            return Err(InputError::Shape(format!(
                "{} bytes for a {channels}x{height}x{width} image",
                data.len()
            )));
        }
        Ok(Self {
            channels,
            height,
            width,
            data,
        })
    }

    /// The image's identity for seeding its views: a hash of shape and pixels.
    pub fn identity(&self) -> u64 {
        content_hash([self.channels, self.height, self.width], &self.data)
    }

    /// Pixels scaled to [0, 1].
    pub fn to_planes(&self) -> Planes {
        Planes {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: self.data.iter().map(|&v| f32::from(v) / 255.0).collect(),
        }
    }
}

/// A planar `f32` image (CHW), values nominally in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Planes {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Planes {
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }

    pub fn plane_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.height * self.width;
        &mut self.data[c * n..(c + 1) * n]
    }
}

/// Encodes an image as PNG (8-bit grey or RGB); decoding it gives back the same pixels.
pub fn encode_png(img: &SourceImage) -> Result<Vec<u8>, InputError> {
    let (w, h) = (img.width as u32, img.height as u32);
    let n = img.height * img.width;
    let dynamic = match img.channels {
        1 => image::GrayImage::from_raw(w, h, img.data.clone()).map(DynamicImage::ImageLuma8),
        3 => {
            let interleaved = (0..n)
                .flat_map(|i| [img.data[i], img.data[n + i], img.data[2 * n + i]])
                .collect();
            image::RgbImage::from_raw(w, h, interleaved).map(DynamicImage::ImageRgb8)
        }
        c => {
            return Err(InputError::Shape(format!(
                "cannot write {c} channels as PNG"
            )))
        }
    }
    .ok_or_else(|| InputError::Shape("pixel buffer does not match the image size".into()))?;
    let mut out = Vec::new();
    dynamic
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| InputError::Io(e.to_string()))?;
    Ok(out)
}

/// Decodes an encoded image (PNG, JPEG, ...) and converts it to `channels` (1 or 3).
///
/// One channel uses ITU-R 601 luma exactly as PIL's `convert("L")`; three channels
/// replicate a grey image. Alpha is dropped.
pub fn decode(
    bytes: &[u8],
    channels: usize,
    limits: DecodeLimits,
) -> Result<SourceImage, InputError> {
    let open = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| InputError::Decode(e.to_string()))
    };
    let reader = open()?;
    let Some(format) = reader.format() else {
        return Err(InputError::Decode("unrecognised image format".into()));
    };
    // Errors name the format: "a float TIFF" reads better than a decoder's internals alone.
    let named = |e: image::ImageError| InputError::Decode(format!("{format:?}: {e}"));
    let (w, h) = open()?.into_dimensions().map_err(named)?;
    if w == 0 || h == 0 {
        return Err(InputError::Empty);
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(InputError::TooLarge {
            width: w,
            height: h,
            max_pixels: limits.max_pixels,
        });
    }
    let mut reader = reader;
    let mut img_limits = image::Limits::default();
    img_limits.max_image_width = Some(w);
    img_limits.max_image_height = Some(h);
    // Room for the widest pixel format (16-bit RGBA) plus the decoder's own buffers.
    img_limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(img_limits);
    let img = reader.decode().map_err(named)?;
    from_dynamic(&img, channels)
}

/// Converts a decoded image to planar 8-bit with the given channel count.
pub fn from_dynamic(img: &DynamicImage, channels: usize) -> Result<SourceImage, InputError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    match channels {
        1 => {
            let data = match img {
                DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
                DynamicImage::ImageLumaA8(g) => g.as_raw().chunks_exact(2).map(|p| p[0]).collect(),
                DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
                    img.to_luma8().into_raw()
                }
                _ => img
                    .to_rgb8()
                    .as_raw()
                    .chunks_exact(3)
                    .map(|p| pil_luma(p[0], p[1], p[2]))
                    .collect(),
            };
            SourceImage::new(1, h, w, data)
        }
        3 => {
            let rgb = img.to_rgb8();
            let n = w * h;
            let mut data = vec![0u8; 3 * n];
            for (i, p) in rgb.as_raw().chunks_exact(3).enumerate() {
                data[i] = p[0];
                data[n + i] = p[1];
                data[2 * n + i] = p[2];
            }
            SourceImage::new(3, h, w, data)
        }
        c => Err(InputError::Shape(format!(
            "models with {c} input channels are not supported (1 or 3)"
        ))),
    }
}

/// PIL's `convert("L")`: L = R * 299/1000 + G * 587/1000 + B * 114/1000, in fixed point.
#[inline]
pub fn pil_luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Filter taps of one output coordinate: first source index and normalised weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Bilinear (triangle) resampling taps with antialiasing when shrinking, as PIL and
/// torchvision's `antialias=True` compute them; `offset`/`len` select a source window.
fn taps(len: usize, out: usize) -> Vec<Taps> {
    let scale = len as f64 / out as f64;
    let support = scale.max(1.0);
    (0..out)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(len);
            let mut weights: Vec<f32> = (lo..hi)
                .map(|x| {
                    let t = ((x as f64 + 0.5 - center) / support).abs();
                    (1.0 - t).max(0.0) as f32
                })
                .collect();
            let sum: f32 = weights.iter().sum();
            if sum > 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
            }
            Taps { start: lo, weights }
        })
        .collect()
}

/// Crops the window `(top, left, height, width)` and resizes it to `out_h x out_w` with
/// antialiased bilinear filtering. The window must lie inside the image.
pub fn crop_resize(
    src: &Planes,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Planes {
    debug_assert!(top + height <= src.height && left + width <= src.width);
    let mut out = Planes::zeros(src.channels, out_h, out_w);
    if height == out_h && width == out_w {
        for c in 0..src.channels {
            let s = src.plane(c);
            let d = out.plane_mut(c);
            for y in 0..out_h {
                let row = (top + y) * src.width + left;
                d[y * out_w..(y + 1) * out_w].copy_from_slice(&s[row..row + out_w]);
            }
        }
        return out;
    }
    let tx = taps(width, out_w);
    let ty = taps(height, out_h);
    let mut tmp = vec![0f32; height * out_w];
    for c in 0..src.channels {
        let s = src.plane(c);
        for y in 0..height {
            let row = &s[(top + y) * src.width + left..(top + y) * src.width + left + width];
            for (x, t) in tx.iter().enumerate() {
                let mut acc = 0f32;
                for (k, w) in t.weights.iter().enumerate() {
                    acc += w * row[t.start + k];
                }
                tmp[y * out_w + x] = acc;
            }
        }
        let d = out.plane_mut(c);
        for (y, t) in ty.iter().enumerate() {
            let drow = &mut d[y * out_w..(y + 1) * out_w];
            for (k, w) in t.weights.iter().enumerate() {
                let srow = &tmp[(t.start + k) * out_w..(t.start + k + 1) * out_w];
                for (dv, sv) in drow.iter_mut().zip(srow) {
                    *dv += w * sv;
                }
            }
        }
    }
    out
}

/// Resizes a whole image (used for the un-augmented view in `orig-vs-aug`).
pub fn resize(src: &Planes, out_h: usize, out_w: usize) -> Planes {
    crop_resize(src, 0, 0, src.height, src.width, out_h, out_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planes(h: usize, w: usize, data: Vec<f32>) -> Planes {
        Planes {
            channels: 1,
            height: h,
            width: w,
            data,
        }
    }

    #[test]
    fn png_round_trips_grey_and_rgb() {
        for c in [1, 3] {
            let data: Vec<u8> = (0..c * 6 * 5).map(|i| (i * 37 % 256) as u8).collect();
            let img = SourceImage::new(c, 6, 5, data).expect("image");
            let png = encode_png(&img).expect("png");
            let back = decode(&png, c, DecodeLimits::default()).expect("decode");
            assert_eq!(back, img);
        }
    }

    #[test]
    fn pil_luma_matches_pil_values() {
        // Values from PIL: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
        assert_eq!(pil_luma(255, 0, 0), 76);
        assert_eq!(pil_luma(0, 255, 0), 150);
        assert_eq!(pil_luma(0, 0, 255), 29);
        assert_eq!(pil_luma(255, 255, 255), 255);
        assert_eq!(pil_luma(10, 200, 30), 124);
    }

    #[test]
    fn crop_at_output_size_copies_pixels_exactly() {
        let src = planes(3, 3, (0..9).map(|v| v as f32).collect());
        let out = crop_resize(&src, 1, 1, 2, 2, 2, 2);
        assert_eq!(out.data, vec![4.0, 5.0, 7.0, 8.0]);
    }

    #[test]
    fn upscaling_is_bilinear_with_half_pixel_centres() {
        // 1x2 -> 1x4: centres at 0.25, 0.75, 1.25, 1.75 of the source grid.
        let src = planes(1, 2, vec![0.0, 1.0]);
        let out = resize(&src, 1, 4);
        let want = [0.0, 0.25, 0.75, 1.0];
        for (a, b) in out.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", out.data);
        }
    }

    #[test]
    fn downscaling_by_two_averages_with_antialiasing() {
        // 1x4 -> 1x2 with a triangle of support 2: weights 1/8, 3/8, 3/8, 1/8 around each centre.
        let src = planes(1, 4, vec![0.0, 4.0, 8.0, 12.0]);
        let out = resize(&src, 1, 2);
        // Output 0, centre 1.0: taps x=0 (w .75), x=1 (w .75), x=2 (w .25) -> (0*.75+4*.75+8*.25)/1.75
        let o0 = (4.0 * 0.75 + 8.0 * 0.25) / 1.75;
        let o1 = (4.0 * 0.25 + 8.0 * 0.75 + 12.0 * 0.75) / 1.75;
        assert!(
            (out.data[0] - o0).abs() < 1e-5 && (out.data[1] - o1).abs() < 1e-5,
            "{:?}",
            out.data
        );
    }

    #[test]
    fn constant_images_stay_constant_under_any_resize() {
        let src = planes(5, 7, vec![0.3; 35]);
        for (h, w) in [(2, 3), (9, 11), (5, 7), (1, 1)] {
            assert!(resize(&src, h, w)
                .data
                .iter()
                .all(|v| (v - 0.3).abs() < 1e-6));
        }
    }

    #[test]
    fn decode_rejects_garbage_empty_and_huge() {
        assert!(matches!(
            decode(b"not an image", 1, DecodeLimits::default()),
            Err(InputError::Decode(_))
        ));
        let mut png = Vec::new();
        image::GrayImage::new(100, 100)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        let small = DecodeLimits { max_pixels: 9_999 };
        assert!(matches!(
            decode(&png, 1, small),
            Err(InputError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(&png[..png.len() / 2], 1, DecodeLimits::default()),
            Err(InputError::Decode(_))
        ));
        let ok = decode(&png, 3, DecodeLimits::default()).expect("decodes");
        assert_eq!((ok.channels, ok.height, ok.width), (3, 100, 100));
    }

    #[test]
    fn rgb_to_one_channel_uses_pil_luma_and_grey_to_three_replicates() {
        let rgb = image::RgbImage::from_raw(2, 1, vec![255, 0, 0, 10, 200, 30]).expect("raw");
        let one = from_dynamic(&DynamicImage::ImageRgb8(rgb), 1).expect("convert");
        assert_eq!(one.data, vec![76, 124]);
        let grey = image::GrayImage::from_raw(2, 1, vec![3, 9]).expect("raw");
        let three = from_dynamic(&DynamicImage::ImageLuma8(grey), 3).expect("convert");
        assert_eq!(three.data, vec![3, 9, 3, 9, 3, 9]);
    }
}
