//! `RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)` with torchvision's
//! tensor semantics on [0, 1] images. On one-channel images saturation and hue are the
//! identity.

use serde::{Deserialize, Serialize};

use super::random_grayscale::luma;
use super::{check_probability, Size, Transform};
use crate::pixels::Planes;
use crate::rng::Rng;

/// `RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`. Brightness,
/// contrast and saturation factors are drawn from `U(max(0, 1 - s), 1 + s)` (`s` >= 0), the
/// hue shift from `U(-hue, hue)` turns (`hue` in [0, 0.5]); 0 (torchvision's default) leaves
/// that adjustment out. `p`: 1 by default (torchvision's `ColorJitter` always applies).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    #[serde(default)]
    pub brightness: f64,
    #[serde(default)]
    pub contrast: f64,
    #[serde(default)]
    pub saturation: f64,
    #[serde(default)]
    pub hue: f64,
    #[serde(default = "default_p")]
    pub p: f64,
}

fn default_p() -> f64 {
    1.0
}

impl Transform for ColorJitter {
    type Params = JitterDraw;

    fn p(&self) -> Option<f64> {
        Some(self.p)
    }

    fn make_params(&self, _: &Planes, rng: &mut Rng) -> JitterDraw {
        draw(self, rng)
    }

    fn transform(&self, mut img: Planes, d: JitterDraw, _: Size) -> Planes {
        apply(&mut img, &d);
        img
    }

    fn validate(&self) -> Result<(), String> {
        check_probability("p", self.p)?;
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{name} = {v}: must be >= 0"));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(format!("hue = {}: must lie in [0, 0.5]", self.hue));
        }
        Ok(())
    }
}

/// One draw of `ColorJitter.get_params`: the order of the four adjustments and their factors.
#[derive(Clone, Debug, PartialEq)]
pub struct JitterDraw {
    pub order: [usize; 4],
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

fn factor(strength: f64, rng: &mut Rng) -> f32 {
    if strength == 0.0 {
        1.0
    } else {
        rng.uniform((1.0 - strength).max(0.0), 1.0 + strength) as f32
    }
}

/// torchvision's `ColorJitter.get_params`: the order, then each factor that is not left out.
pub fn draw(spec: &ColorJitter, rng: &mut Rng) -> JitterDraw {
    let order = rng.permutation::<4>();
    let brightness = factor(spec.brightness, rng);
    let contrast = factor(spec.contrast, rng);
    let saturation = factor(spec.saturation, rng);
    let hue = if spec.hue == 0.0 {
        0.0
    } else {
        rng.uniform(-spec.hue, spec.hue) as f32
    };
    JitterDraw {
        order,
        brightness,
        contrast,
        saturation,
        hue,
    }
}

/// Applies the four adjustments in the drawn order, in place.
pub fn apply(img: &mut Planes, d: &JitterDraw) {
    for &op in &d.order {
        match op {
            0 => brightness(img, d.brightness),
            1 => contrast(img, d.contrast),
            2 => saturation(img, d.saturation),
            _ => hue(img, d.hue),
        }
    }
}

pub fn brightness(img: &mut Planes, f: f32) {
    for v in &mut img.data {
        *v = (*v * f).clamp(0.0, 1.0);
    }
}

/// Blend with the mean luma of the whole image.
pub fn contrast(img: &mut Planes, f: f32) {
    let grey = luma(img);
    let mean = grey.iter().map(|&v| f64::from(v)).sum::<f64>() as f32 / grey.len() as f32;
    for v in &mut img.data {
        *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0);
    }
}

/// Blend with the per-pixel luma.
pub fn saturation(img: &mut Planes, f: f32) {
    if img.channels != 3 {
        return;
    }
    let grey = luma(img);
    for c in 0..3 {
        for (v, g) in img.plane_mut(c).iter_mut().zip(&grey) {
            *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0);
        }
    }
}

/// Shift the hue by `f` turns (torchvision's `_rgb2hsv` / `_hsv2rgb`).
pub fn hue(img: &mut Planes, f: f32) {
    if img.channels != 3 || f == 0.0 {
        return;
    }
    let n = img.height * img.width;
    for i in 0..n {
        let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let h = (h + f).rem_euclid(1.0);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        img.data[i] = r;
        img.data[n + i] = g;
        img.data[2 * n + i] = b;
    }
}

pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let eqc = cr == 0.0;
    let ones = if eqc { 1.0 } else { maxc };
    let s = cr / ones;
    let crd = if eqc { 1.0 } else { cr };
    let rc = (maxc - r) / crd;
    let gc = (maxc - g) / crd;
    let bc = (maxc - b) / crd;
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = (h / 6.0 + 1.0).rem_euclid(1.0);
    (h, s, maxc)
}

pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let i = (i as i32).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(px: &[[f32; 3]]) -> Planes {
        let n = px.len();
        let mut data = vec![0.0; 3 * n];
        for (i, p) in px.iter().enumerate() {
            for c in 0..3 {
                data[c * n + i] = p[c];
            }
        }
        Planes {
            channels: 3,
            height: 1,
            width: n,
            data,
        }
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn zero_strength_jitter_is_the_identity() {
        let spec = ColorJitter {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            p: 1.0,
        };
        let base = rgb(&[[0.1, 0.5, 0.9], [0.3, 0.2, 0.7], [1.0, 0.0, 0.4]]);
        for seed in 0..20 {
            let mut img = base.clone();
            let d = draw(&spec, &mut Rng::from_seed(seed));
            apply(&mut img, &d);
            assert!(close(&img.data, &base.data), "{:?}", img.data);
        }
    }

    #[test]
    fn brightness_scales_and_clamps() {
        let mut img = rgb(&[[0.2, 0.5, 0.8]]);
        brightness(&mut img, 1.5);
        assert!(close(&img.data, &[0.3, 0.75, 1.0]));
    }

    #[test]
    fn contrast_blends_with_the_mean_luma() {
        // Two grey pixels 0.2 and 0.6: mean 0.4; factor 0.5 -> 0.3 and 0.5.
        let mut img = Planes {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.2, 0.6],
        };
        contrast(&mut img, 0.5);
        assert!(close(&img.data, &[0.3, 0.5]));
    }

    #[test]
    fn saturation_and_hue_leave_one_channel_untouched() {
        let mut one = Planes {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.2, 0.6],
        };
        saturation(&mut one, 0.0);
        hue(&mut one, 0.3);
        assert_eq!(one.data, vec![0.2, 0.6]);
    }

    #[test]
    fn saturation_zero_gives_grey() {
        let mut img = rgb(&[[0.2, 0.4, 0.6]]);
        saturation(&mut img, 0.0);
        let g = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6;
        assert!(close(&img.data, &[g, g, g]));
    }

    #[test]
    fn hue_shift_rotates_primaries_and_round_trips() {
        // A third of a turn takes red to green.
        let mut img = rgb(&[[1.0, 0.0, 0.0]]);
        hue(&mut img, 1.0 / 3.0);
        assert!(close(&img.data, &[0.0, 1.0, 0.0]), "{:?}", img.data);
        for px in [[0.1, 0.5, 0.9], [0.3, 0.2, 0.7], [0.5, 0.5, 0.5]] {
            let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
            let (r, g, b) = hsv_to_rgb(h, s, v);
            assert!(close(&[r, g, b], &px));
        }
    }
}
