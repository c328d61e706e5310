//! Images as the scorer sees them: decoding with limits, conversion to the model's
//! channel count, and planar `f32` pixels in [0, 1] with separable resampling.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

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
/// replicate a grey image. Alpha is dropped: the colour values are used as stored, not
/// composited over a background (docs/scoring.md#inputs). 16-bit samples are scaled to 8.
///
/// # Errors
/// [`InputError::TooLarge`] when the header's `width * height` is over
/// `limits.max_pixels` (read before any pixel is decoded, also for headers too large for the
/// decoder to start on); [`InputError::Empty`] for a zero dimension;
/// [`InputError::Decode`] for unknown formats, broken files and pixel formats sslmem does
/// not read (saying what to convert them to); [`InputError::Shape`] for `channels` other
/// than 1 or 3.
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
    let named = |e: image::ImageError| match e {
        image::ImageError::Unsupported(_) if format == ImageFormat::Tiff => {
            InputError::Decode(unsupported_tiff(bytes, &e))
        }
        e => InputError::Decode(format!("{format:?}: {e}")),
    };
    // Room for the widest pixel format (16-bit RGBA) plus the decoder's own buffers.
    let max_alloc = |pixels: u64| pixels.saturating_mul(8).saturating_add(64 << 20);
    let mut header = open()?;
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(max_alloc(limits.max_pixels));
    header.limits(header_limits);
    let (w, h) = match header.into_dimensions() {
        Ok(d) => d,
        // A header whose size the decoder refuses to start on (PNG's rows overflow before
        // any limit is asked): read the size from the header itself, to say which limit.
        Err(e @ image::ImageError::Limits(_)) => {
            header_dimensions(bytes, format).ok_or_else(|| named(e))?
        }
        Err(e) => return Err(named(e)),
    };
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
    img_limits.max_alloc = Some(max_alloc(pixels));
    reader.limits(img_limits);
    let img = reader.decode().map_err(named)?;
    from_dynamic(&img, channels)
}

/// `(width, height)` as a file's header states them, for formats whose decoder may refuse a
/// huge header outright (PNG: the IHDR chunk, first after the signature).
fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    match format {
        ImageFormat::Png if bytes.get(12..16) == Some(b"IHDR") => Some((be(16)?, be(20)?)),
        _ => None,
    }
}

/// What a TIFF the decoder does not support holds, and what to convert it to: "32-bit
/// floating-point grey samples" rather than the decoder's "color type Unknown(32)".
fn unsupported_tiff(bytes: &[u8], e: &image::ImageError) -> String {
    use tiff::tags::{SampleFormat, Tag};
    let described = (|| {
        let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes)).ok()?;
        let color = d.colortype().ok()?;
        // One value per sample; absent means unsigned integers (TIFF 6.0).
        let format = d
            .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
            .ok()
            .flatten()
            .and_then(|v| v.first().copied())
            .map_or(SampleFormat::Uint, SampleFormat::from_u16_exhaustive);
        let (layout, bits) = match color {
            tiff::ColorType::Gray(b) => ("grey", b),
            tiff::ColorType::GrayA(b) => ("grey and alpha", b),
            tiff::ColorType::RGB(b) => ("RGB", b),
            tiff::ColorType::RGBA(b) => ("RGBA", b),
            tiff::ColorType::CMYK(b) => ("CMYK", b),
            tiff::ColorType::CMYKA(b) => ("CMYK and alpha", b),
            tiff::ColorType::YCbCr(b) => ("YCbCr", b),
            tiff::ColorType::Palette(b) => ("palette", b),
            _ => return None,
        };
        let kind = match format {
            SampleFormat::IEEEFP => "floating-point",
            SampleFormat::Int => "signed integer",
            SampleFormat::Uint => "unsigned integer",
            _ => "other",
        };
        Some(format!("{bits}-bit {kind} {layout} samples"))
    })();
    let what = described.unwrap_or_else(|| format!("this pixel format ({e})"));
    format!(
        "TIFF with {what} is not supported: convert it to an 8- or 16-bit integer PNG or TIFF \
         (grey or RGB), scaling the values to 0-255 or 0-65535"
    )
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

    /// A 1x1 RGBA PNG whose header is rewritten to claim `w x h` pixels (CRC fixed, so the
    /// decoder reads the header as valid).
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let mut png = Vec::new();
        image::RgbaImage::new(1, 1)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        assert_eq!(&png[12..16], b"IHDR");
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        png
    }

    #[test]
    fn huge_headers_are_too_large_with_their_size_not_a_decoder_error() {
        let limits = DecodeLimits::default();
        for (w, h) in [(1 << 31, 1 << 31), (u32::MAX, 3), (100_000, 100_000)] {
            let e = decode(&png_claiming(w, h), 3, limits).expect_err("too large");
            assert!(
                matches!(e, InputError::TooLarge { width, height, max_pixels }
                    if (width, height, max_pixels) == (w, h, limits.max_pixels)),
                "{w}x{h}: {e}"
            );
            assert!(e.to_string().contains("raise --max-pixels"), "{e}");
        }
        // Under the limit, such a header gets as far as the pixels, which are missing.
        let e = decode(&png_claiming(3000, 2000), 1, limits).expect_err("no pixels");
        assert!(matches!(e, InputError::Decode(_)), "{e}");
    }

    #[test]
    fn alpha_is_dropped_keeping_the_stored_colours() {
        let rgb = image::RgbImage::from_fn(5, 4, |x, y| {
            image::Rgb([(x * 50) as u8, (y * 60) as u8, (x * y * 9) as u8])
        });
        let rgba = image::RgbaImage::from_fn(5, 4, |x, y| {
            let p = rgb.get_pixel(x, y).0;
            // Transparency that varies: not composited over any background.
            image::Rgba([p[0], p[1], p[2], ((x + y) * 30) as u8])
        });
        let encode = |img: DynamicImage| {
            let mut out = Vec::new();
            img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                .expect("encode");
            out
        };
        let (with, without) = (
            encode(DynamicImage::ImageRgba8(rgba)),
            encode(DynamicImage::ImageRgb8(rgb.clone())),
        );
        let grey = DynamicImage::ImageRgb8(rgb).to_luma8();
        let grey_alpha = image::GrayAlphaImage::from_fn(5, 4, |x, y| {
            image::LumaA([grey.get_pixel(x, y).0[0], (x * 40) as u8])
        });
        let grey_with = encode(DynamicImage::ImageLumaA8(grey_alpha));
        let grey_without = encode(DynamicImage::ImageLuma8(grey));
        for c in [1, 3] {
            let l = DecodeLimits::default();
            assert_eq!(
                decode(&with, c, l).expect("rgba"),
                decode(&without, c, l).expect("rgb")
            );
            assert_eq!(
                decode(&grey_with, c, l).expect("la"),
                decode(&grey_without, c, l).expect("l")
            );
        }
    }

    fn tiff_of<C: tiff::encoder::colortype::ColorType>(data: &[C::Inner]) -> Vec<u8>
    where
        [C::Inner]: tiff::encoder::TiffValue,
    {
        let mut out = Cursor::new(Vec::new());
        tiff::encoder::TiffEncoder::new(&mut out)
            .expect("encoder")
            .write_image::<C>(2, 2, data)
            .expect("write");
        out.into_inner()
    }

    #[test]
    fn unsupported_tiffs_say_what_they_hold_and_what_to_convert_to() {
        use tiff::encoder::colortype::{Gray32, Gray32Float, Gray64Float, RGB32Float};
        let l = DecodeLimits::default();
        for (bytes, what) in [
            (
                tiff_of::<Gray32Float>(&[0.0, 0.25, 0.5, 1.0]),
                "32-bit floating-point grey samples",
            ),
            (
                tiff_of::<Gray64Float>(&[0.0, 0.25, 0.5, 1.0]),
                "64-bit floating-point grey samples",
            ),
            (
                tiff_of::<Gray32>(&[0, 1, 2, 3]),
                "32-bit unsigned integer grey samples",
            ),
        ] {
            let e = decode(&bytes, 1, l).expect_err(what).to_string();
            assert!(
                e.contains(&format!("TIFF with {what} is not supported"))
                    && e.contains("convert it to an 8- or 16-bit integer PNG or TIFF"),
                "{e}"
            );
            assert!(!e.contains("Unknown("), "{e}");
        }
        // RGB float TIFFs are read (values in [0, 1] become 0-255).
        let rgb =
            tiff_of::<RGB32Float>(&[0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let img = decode(&rgb, 3, l).expect("rgb float");
        assert_eq!(img.data[..4], [0, 255, 0, 255]);
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
