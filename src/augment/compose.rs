//! [`Compose`]: the ordered list of transforms a bundle's `augment` records, its presets, its
//! validation, and its JSON: a list of tagged objects, written and read; the object form of
//! manifests written before the list existed is read too (`super::legacy`).

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::legacy::Legacy;
use super::{
    ColorJitter, GaussianBlur, RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop,
    RandomSolarize, Step,
};
use crate::error::{Error, Result};

/// The presets [`Compose::preset`] knows.
pub const PRESETS: &[&str] = &["simclr", "authors", "byol", "none"];

/// torchvision's `Compose`: transforms applied in order to each view. In JSON a list of
/// objects tagged by `type` (docs/bundle.md#augment), e.g.
/// `[{"type": "random_resized_crop", "scale": [0.08, 1.0]}, {"type": "random_horizontal_flip"}]`.
/// The object form of older manifests (`{"crop": {..}, "flip_p": 0.5, ...}`) is read as the
/// list whose views are the same, bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Compose {
    pub transforms: Vec<Step>,
}

impl Default for Compose {
    /// SimCLR's, what a manifest without `augment` means.
    fn default() -> Self {
        Self::simclr()
    }
}

impl Compose {
    pub fn new(transforms: Vec<Step>) -> Self {
        Self { transforms }
    }

    /// SimCLR's augmentations [Chen et al. 2020, appendix A]: crop (0.08, 1), flip 0.5,
    /// jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale 0.2.
    pub fn simclr() -> Self {
        Self::simclr_with(ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            p: 0.8,
        })
    }

    /// The SSLMem authors' scoring script: SimCLR's with jitter (0.8, 0.8, 0.8, 0.2).
    pub fn authors() -> Self {
        Self::simclr_with(ColorJitter {
            brightness: 0.8,
            contrast: 0.8,
            saturation: 0.8,
            hue: 0.2,
            p: 0.8,
        })
    }

    fn simclr_with(jitter: ColorJitter) -> Self {
        Self::new(vec![
            RandomResizedCrop::default().into(),
            RandomHorizontalFlip { p: 0.5 }.into(),
            jitter.into(),
            RandomGrayscale { p: 0.2 }.into(),
        ])
    }

    /// BYOL's augmentations [Grill et al. 2020, table 6], one pipeline for both views (BYOL
    /// draws blur with p 1.0 and 0.1 and solarize with 0 and 0.2 for its two views; here
    /// blur p 0.5 and solarize p 0.2): crop (0.08, 1), flip 0.5, jitter (0.4, 0.4, 0.2, 0.1)
    /// with p 0.8, grayscale 0.2, Gaussian blur with p 0.5 (sigma (0.1, 2), a kernel of about
    /// 10% of the side: 23 px at 224), solarize with p 0.2.
    pub fn byol() -> Self {
        Self::new(vec![
            RandomResizedCrop::default().into(),
            RandomHorizontalFlip { p: 0.5 }.into(),
            ColorJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.2,
                hue: 0.1,
                p: 0.8,
            }
            .into(),
            RandomGrayscale { p: 0.2 }.into(),
            GaussianBlur {
                kernel_size: None,
                sigma: [0.1, 2.0],
                p: 0.5,
            }
            .into(),
            RandomSolarize {
                threshold: 0.5,
                p: 0.2,
            }
            .into(),
        ])
    }

    /// No augmentation: every view is the image resized to the model's size.
    pub fn identity() -> Self {
        Self::new(Vec::new())
    }

    /// A named preset: one of [`PRESETS`] (`none` is [`Compose::identity`]).
    ///
    /// # Errors
    /// [`Error::Param`] naming the presets for any other name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "simclr" => Ok(Self::simclr()),
            "authors" => Ok(Self::authors()),
            "byol" => Ok(Self::byol()),
            "none" => Ok(Self::identity()),
            other => Err(Error::Param(format!(
                "unknown augmentation preset '{other}' ({})",
                PRESETS.join(", ")
            ))),
        }
    }

    /// Whether a transform sets the output size, so that no resize comes first.
    pub fn sets_size(&self) -> bool {
        self.transforms.iter().any(Step::sets_size)
    }

    /// Every random resized crop of the list, to edit (`sslmem-train --crop-scale-min`).
    pub fn crops_mut(&mut self) -> impl Iterator<Item = &mut RandomResizedCrop> {
        self.transforms.iter_mut().filter_map(|s| match s {
            Step::RandomResizedCrop(c) => Some(c),
            _ => None,
        })
    }

    /// Checks every transform's parameters.
    ///
    /// # Errors
    /// [`Error::Param`] naming the first bad one by its place in the list:
    /// `augment[2].p = 1.5: a probability must lie in [0, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (i, step) in self.transforms.iter().enumerate() {
            step.validate()
                .map_err(|m| Error::Param(format!("augment[{i}].{m}")))?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Compose {
    /// A list of tagged transforms, or the older object form (`super::legacy`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Compose;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of transforms ({\"type\": \"random_resized_crop\", ...}) or the older augment object")
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Compose, A::Error> {
                Vec::<Step>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(Compose::new)
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Compose, A::Error> {
                Legacy::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Legacy::into_compose)
            }
        }
        d.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{Augmenter, TRANSFORMS};

    #[test]
    fn writes_a_tagged_list_and_reads_it_back() {
        let spec = Compose::byol();
        let json = serde_json::to_string(&spec).expect("serialise");
        assert!(
            json.starts_with(r#"[{"type":"random_resized_crop","scale":[0.08,1.0]"#),
            "{json}"
        );
        assert!(
            !json.contains("kernel_size"),
            "an automatic kernel is not written: {json}"
        );
        assert_eq!(serde_json::from_str::<Compose>(&json).expect("parse"), spec);
        for name in PRESETS {
            let p = Compose::preset(name).expect("preset");
            p.validate().expect("valid");
            let json = serde_json::to_string(&p).expect("serialise");
            assert_eq!(serde_json::from_str::<Compose>(&json).expect("parse"), p);
        }
        assert!(Compose::preset("dino").is_err());
    }

    #[test]
    fn list_entries_fill_torchvision_defaults_and_refuse_unknown_keys() {
        let spec: Compose = serde_json::from_str(
            r#"[{"type": "random_resized_crop"}, {"type": "random_horizontal_flip"},
                {"type": "random_grayscale"}, {"type": "color_jitter"}]"#,
        )
        .expect("parse");
        let want = Compose::new(vec![
            RandomResizedCrop::default().into(),
            RandomHorizontalFlip { p: 0.5 }.into(),
            RandomGrayscale { p: 0.1 }.into(),
            ColorJitter {
                brightness: 0.0,
                contrast: 0.0,
                saturation: 0.0,
                hue: 0.0,
                p: 1.0,
            }
            .into(),
        ]);
        assert_eq!(spec, want);
        for bad in [
            r#"[{"type": "random_horizontal_flip", "prob": 0.5}]"#,
            r#"[{"type": "random_rotation", "degrees": 10}]"#,
            r#"[{"p": 0.5}]"#,
            r#"[{"type": "color_jitter", "brightness": 0.4}, 3]"#,
            r#""simclr""#,
        ] {
            assert!(serde_json::from_str::<Compose>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_registered_transform_reads_with_its_defaults() {
        for tag in TRANSFORMS {
            let json = format!(r#"[{{"type": "{tag}"}}]"#);
            let spec: Compose = serde_json::from_str(&json).expect(tag);
            assert_eq!(spec.transforms[0].tag(), *tag);
            spec.validate().expect(tag);
            let aug = Augmenter::new(spec, 8, 8).expect(tag);
            let img = crate::pixels::Planes {
                channels: 3,
                height: 10,
                width: 12,
                data: (0..360).map(|i| (i % 17) as f32 / 16.0).collect(),
            };
            let v = aug.view(&img, 1, 2, 3);
            assert_eq!((v.channels, v.height, v.width), (3, 8, 8), "{tag}");
        }
    }

    #[test]
    fn validation_names_the_place_and_the_parameter() {
        let bad = |json: &str| {
            serde_json::from_str::<Compose>(json)
                .expect("parse")
                .validate()
                .expect_err(json)
                .to_string()
        };
        let m = bad(
            r#"[{"type": "random_resized_crop"}, {"type": "random_horizontal_flip"},
                       {"type": "random_grayscale", "p": 1.5}]"#,
        );
        assert!(
            m.contains("augment[2].p = 1.5: a probability must lie in [0, 1]"),
            "{m}"
        );
        for (json, want) in [
            (
                r#"[{"type": "random_resized_crop", "scale": [0.5, 0.2]}]"#,
                "augment[0].scale [0.5, 0.2]",
            ),
            (
                r#"[{"type": "gaussian_blur", "kernel_size": 4}]"#,
                "augment[0].kernel_size = 4",
            ),
            (
                r#"[{"type": "color_jitter", "hue": 0.7}]"#,
                "augment[0].hue = 0.7",
            ),
            (
                r#"[{"type": "resize"}, {"type": "random_solarize", "p": -0.1}]"#,
                "augment[1].p = -0.1",
            ),
        ] {
            let m = bad(json);
            assert!(m.contains(want), "{m}");
        }
    }

    #[test]
    fn crop_edits_reach_every_crop() {
        let mut spec = Compose::simclr();
        for c in spec.crops_mut() {
            c.scale[0] = 0.3;
        }
        assert!(matches!(&spec.transforms[0], Step::RandomResizedCrop(c) if c.scale == [0.3, 1.0]));
        assert_eq!(Compose::identity().crops_mut().count(), 0);
    }
}
