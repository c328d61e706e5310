//! The object form of `augment` that manifests, training records and audit summaries were
//! written in before the list of transforms (issue 19):
//! `{"crop": {scale, ratio}, "flip_p", "jitter": {brightness, contrast, saturation, hue, p},
//! "grayscale_p", "blur": {kernel_size, sigma, p}, "solarize": {threshold, p}}`, each part
//! optional. It is read, never written, and becomes the [`Compose`] whose views are the same
//! bit for bit: the same transforms in the same order drawing the same numbers.

use serde::Deserialize;

use super::{
    ColorJitter, Compose, GaussianBlur, RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop,
    RandomSolarize, Resize, Step,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Crop {
    #[serde(default = "super::random_resized_crop::default_scale")]
    scale: [f64; 2],
    #[serde(default = "super::random_resized_crop::default_ratio")]
    ratio: [f64; 2],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Jitter {
    brightness: f64,
    contrast: f64,
    saturation: f64,
    hue: f64,
    #[serde(default = "default_jitter_p")]
    p: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Blur {
    kernel_size: usize,
    #[serde(default = "super::gaussian_blur::default_sigma")]
    sigma: [f64; 2],
    p: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Solarize {
    #[serde(default = "super::random_solarize::default_threshold")]
    threshold: f64,
    p: f64,
}

/// The older `augment` object; absent parts are not applied.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Legacy {
    #[serde(default)]
    crop: Option<Crop>,
    #[serde(default)]
    flip_p: f64,
    #[serde(default)]
    jitter: Option<Jitter>,
    #[serde(default)]
    grayscale_p: f64,
    #[serde(default)]
    blur: Option<Blur>,
    #[serde(default)]
    solarize: Option<Solarize>,
}

fn default_jitter_p() -> f64 {
    0.8
}

impl Legacy {
    /// The list the old fixed pipeline ran: crop (or, without one, a resize first), flip,
    /// jitter, grayscale, blur, solarize. Flip and grayscale are always in it, since the old
    /// code drew their number even with probability 0; jitter, blur and solarize only when
    /// given.
    pub(super) fn into_compose(self) -> Compose {
        let mut steps: Vec<Step> = Vec::with_capacity(6);
        steps.push(match self.crop {
            Some(c) => RandomResizedCrop {
                scale: c.scale,
                ratio: c.ratio,
            }
            .into(),
            None => Resize {}.into(),
        });
        steps.push(RandomHorizontalFlip { p: self.flip_p }.into());
        if let Some(j) = self.jitter {
            steps.push(
                ColorJitter {
                    brightness: j.brightness,
                    contrast: j.contrast,
                    saturation: j.saturation,
                    hue: j.hue,
                    p: j.p,
                }
                .into(),
            );
        }
        steps.push(
            RandomGrayscale {
                p: self.grayscale_p,
            }
            .into(),
        );
        if let Some(b) = self.blur {
            steps.push(
                GaussianBlur {
                    kernel_size: Some(b.kernel_size),
                    sigma: b.sigma,
                    p: b.p,
                }
                .into(),
            );
        }
        if let Some(s) = self.solarize {
            steps.push(
                RandomSolarize {
                    threshold: s.threshold,
                    p: s.p,
                }
                .into(),
            );
        }
        Compose::new(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::Augmenter;
    use crate::pixels::Planes;

    /// Older `augment` objects: the presets simclr, authors and none as they were written, the
    /// default bundle's, blur and solarize, no crop, zero and one probabilities.
    const SPECS: [&str; 9] = [
        r#"{"crop":{"scale":[0.08,1.0],"ratio":[0.75,1.3333333333333333]},"flip_p":0.5,"jitter":{"brightness":0.4,"contrast":0.4,"saturation":0.4,"hue":0.1,"p":0.8},"grayscale_p":0.2,"blur":null,"solarize":null}"#,
        r#"{"crop":{"scale":[0.08,1.0],"ratio":[0.75,1.3333333333333333]},"flip_p":0.5,"jitter":{"brightness":0.8,"contrast":0.8,"saturation":0.8,"hue":0.2,"p":0.8},"grayscale_p":0.2}"#,
        r#"{"crop":null,"flip_p":0.0,"jitter":null,"grayscale_p":0.0,"blur":null,"solarize":null}"#,
        r#"{"crop":{"scale":[0.3,1.0],"ratio":[0.75,1.3333333333333333]},"flip_p":0.5,"jitter":{"brightness":0.4,"contrast":0.4,"saturation":0.4,"hue":0.1,"p":0.8},"grayscale_p":0.2,"blur":null,"solarize":null}"#,
        r#"{"crop":{},"flip_p":0.5,"jitter":{"brightness":0.4,"contrast":0.4,"saturation":0.4,"hue":0.1},"grayscale_p":0.2,"blur":{"kernel_size":3,"sigma":[0.1,2.0],"p":0.5},"solarize":{"threshold":0.5,"p":0.2}}"#,
        r#"{"flip_p":0.5,"jitter":{"brightness":0.3,"contrast":0.2,"saturation":0.5,"hue":0.05,"p":0.9},"grayscale_p":0.3,"blur":{"kernel_size":5,"sigma":[0.5,1.5],"p":0.7},"solarize":{"threshold":0.6,"p":0.5}}"#,
        r#"{"blur":{"kernel_size":3,"p":1.0},"solarize":{"p":1.0}}"#,
        r#"{"crop":{"scale":[0.5,0.9],"ratio":[0.5,2.0]},"flip_p":0.0,"jitter":{"brightness":0.6,"contrast":0.0,"saturation":0.0,"hue":0.3,"p":1.0},"grayscale_p":0.5}"#,
        r#"{"grayscale_p":1.0,"solarize":{"threshold":0.3,"p":0.5}}"#,
    ];

    /// FNV-1a hashes of every view below of each of [`SPECS`], as the code before the list
    /// of transforms made them (its `Augmenter::view` with the fixed pipeline, at 56c0930).
    const GOLDEN: [u64; 9] = [
        0xf3d7_3584_7e13_e6be,
        0xed70_9539_53ca_f2d0,
        0x6f45_eea1_72c8_afb5,
        0x0cb7_1400_3f65_4c2f,
        0xa4a6_3f77_f4c2_461e,
        0x9f02_8480_309d_835b,
        0x26e2_ffb2_cb43_fed5,
        0xe431_cdb4_3b42_d9b2,
        0xa46f_1b77_145c_db66,
    ];

    fn image(c: usize, h: usize, w: usize) -> Planes {
        let data = (0..c * h * w)
            .map(|i| (((i * 37 + i / 7 * 11) % 256) as f32) / 255.0)
            .collect();
        Planes {
            channels: c,
            height: h,
            width: w,
            data,
        }
    }

    /// 72 views (3 image shapes, 2 seeds, 2 identities, 6 views) of each spec, hashed.
    fn view_hash(spec: &Compose) -> u64 {
        let mut bytes = Vec::new();
        for (img, (oh, ow)) in [
            (image(1, 28, 28), (28, 28)),
            (image(3, 20, 24), (16, 12)),
            (image(3, 32, 32), (32, 32)),
        ] {
            let aug = Augmenter::new(spec.clone(), oh, ow).expect("valid");
            for seed in [0u64, 7] {
                for id in [1u64, 99] {
                    for v in 0..6 {
                        for x in &aug.view(&img, seed, id, v).data {
                            bytes.extend_from_slice(&x.to_bits().to_le_bytes());
                        }
                    }
                }
            }
        }
        crate::rng::content_hash([0, 0, 0], &bytes)
    }

    #[test]
    fn older_objects_give_the_views_the_old_pipeline_gave() {
        for (json, want) in SPECS.iter().zip(GOLDEN) {
            let spec: Compose = serde_json::from_str(json).expect("legacy object");
            assert_eq!(view_hash(&spec), want, "{json}");
            // Written back, it is a list with the same views.
            let list = serde_json::to_string(&spec).expect("serialise");
            assert!(list.starts_with('['), "{list}");
            let again: Compose = serde_json::from_str(&list).expect("list");
            assert_eq!(again, spec);
        }
    }

    #[test]
    fn older_presets_read_as_the_presets() {
        assert_eq!(
            serde_json::from_str::<Compose>(SPECS[0]).expect("simclr"),
            Compose::simclr()
        );
        assert_eq!(
            serde_json::from_str::<Compose>(SPECS[1]).expect("authors"),
            Compose::authors()
        );
        // The old `none` drew two numbers for nothing; its views are the identity's.
        let none: Compose = serde_json::from_str(SPECS[2]).expect("none");
        assert_eq!(view_hash(&none), view_hash(&Compose::identity()));
    }

    #[test]
    fn older_objects_fill_defaults_and_refuse_unknown_keys() {
        let partial: Compose =
            serde_json::from_str(r#"{"crop": {}, "blur": {"kernel_size": 3, "p": 0.5}}"#)
                .expect("parse");
        let want = Compose::new(vec![
            RandomResizedCrop::default().into(),
            RandomHorizontalFlip { p: 0.0 }.into(),
            RandomGrayscale { p: 0.0 }.into(),
            GaussianBlur {
                kernel_size: Some(3),
                sigma: [0.1, 2.0],
                p: 0.5,
            }
            .into(),
        ]);
        assert_eq!(partial, want);
        for bad in [
            r#"{"flip": 0.5}"#,
            r#"{"blur": {"kernel_size": 3}}"#,
            r#"{"jitter": {"brightness": 0.4}}"#,
        ] {
            assert!(serde_json::from_str::<Compose>(bad).is_err(), "{bad}");
        }
        let bad: Compose = serde_json::from_str(r#"{"flip_p": 1.5}"#).expect("parse");
        let m = bad.validate().expect_err("flip_p 1.5").to_string();
        assert!(m.contains("augment[1].p = 1.5"), "{m}");
    }
}
