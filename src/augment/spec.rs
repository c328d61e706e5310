//! The augmentation spec: serde-serialisable, stored in a bundle's manifest, with
//! parameter names as torchvision uses them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `RandomResizedCrop(size, scale, ratio)`; the size is the model's input size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropSpec {
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
}

/// `RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JitterSpec {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
    #[serde(default = "default_jitter_p")]
    pub p: f64,
}

/// `RandomApply([GaussianBlur(kernel_size, sigma)], p)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlurSpec {
    pub kernel_size: usize,
    #[serde(default = "default_sigma")]
    pub sigma: [f64; 2],
    pub p: f64,
}

/// `RandomSolarize(threshold, p)` on [0, 1] pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolarizeSpec {
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    pub p: f64,
}

/// The SimCLR augmentation family (docs/science.md#training-augmentations). Omitted parts
/// are not applied, except that a missing spec as a whole means [`AugmentSpec::simclr`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    #[serde(default)]
    pub crop: Option<CropSpec>,
    #[serde(default)]
    pub flip_p: f64,
    #[serde(default)]
    pub jitter: Option<JitterSpec>,
    #[serde(default)]
    pub grayscale_p: f64,
    #[serde(default)]
    pub blur: Option<BlurSpec>,
    #[serde(default)]
    pub solarize: Option<SolarizeSpec>,
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}
fn default_jitter_p() -> f64 {
    0.8
}
fn default_sigma() -> [f64; 2] {
    [0.1, 2.0]
}
fn default_threshold() -> f64 {
    0.5
}

impl Default for AugmentSpec {
    fn default() -> Self {
        Self::simclr()
    }
}

impl AugmentSpec {
    /// SimCLR's defaults: crop (0.08, 1), flip 0.5, jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
    /// grayscale 0.2; no blur or solarize.
    pub fn simclr() -> Self {
        Self {
            crop: Some(CropSpec {
                scale: default_scale(),
                ratio: default_ratio(),
            }),
            flip_p: 0.5,
            jitter: Some(JitterSpec {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
                hue: 0.1,
                p: 0.8,
            }),
            grayscale_p: 0.2,
            blur: None,
            solarize: None,
        }
    }

    /// The SSLMem authors' scoring script: SimCLR with jitter (0.8, 0.8, 0.8, 0.2).
    pub fn authors() -> Self {
        Self {
            jitter: Some(JitterSpec {
                brightness: 0.8,
                contrast: 0.8,
                saturation: 0.8,
                hue: 0.2,
                p: 0.8,
            }),
            ..Self::simclr()
        }
    }

    /// No augmentation at all: every view is the (resized) image.
    pub fn identity() -> Self {
        Self {
            crop: None,
            flip_p: 0.0,
            jitter: None,
            grayscale_p: 0.0,
            blur: None,
            solarize: None,
        }
    }

    /// A named preset: `simclr`, `authors` or `none`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "simclr" => Ok(Self::simclr()),
            "authors" => Ok(Self::authors()),
            "none" => Ok(Self::identity()),
            other => Err(Error::Param(format!(
                "unknown augmentation preset '{other}' (simclr, authors, none)"
            ))),
        }
    }

    /// Checks every parameter against the range torchvision accepts.
    pub fn validate(&self) -> Result<()> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(Error::Param(format!(
                    "augment.{name} = {p}: a probability must lie in [0, 1]"
                )))
            }
        };
        if let Some(c) = &self.crop {
            if !(c.scale[0] > 0.0 && c.scale[0] <= c.scale[1] && c.scale[1] <= 1.0) {
                return Err(Error::Param(format!(
                    "augment.crop.scale {:?}: need 0 < min <= max <= 1",
                    c.scale
                )));
            }
            if !(c.ratio[0] > 0.0 && c.ratio[0] <= c.ratio[1] && c.ratio[1].is_finite()) {
                return Err(Error::Param(format!(
                    "augment.crop.ratio {:?}: need 0 < min <= max",
                    c.ratio
                )));
            }
        }
        prob("flip_p", self.flip_p)?;
        prob("grayscale_p", self.grayscale_p)?;
        if let Some(j) = &self.jitter {
            prob("jitter.p", j.p)?;
            for (name, v) in [
                ("brightness", j.brightness),
                ("contrast", j.contrast),
                ("saturation", j.saturation),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(Error::Param(format!(
                        "augment.jitter.{name} = {v}: must be >= 0"
                    )));
                }
            }
            if !(0.0..=0.5).contains(&j.hue) {
                return Err(Error::Param(format!(
                    "augment.jitter.hue = {}: must lie in [0, 0.5]",
                    j.hue
                )));
            }
        }
        if let Some(b) = &self.blur {
            prob("blur.p", b.p)?;
            if b.kernel_size == 0 || b.kernel_size.is_multiple_of(2) {
                return Err(Error::Param(format!(
                    "augment.blur.kernel_size = {}: must be odd and positive",
                    b.kernel_size
                )));
            }
            if !(b.sigma[0] > 0.0 && b.sigma[0] <= b.sigma[1] && b.sigma[1].is_finite()) {
                return Err(Error::Param(format!(
                    "augment.blur.sigma {:?}: need 0 < min <= max",
                    b.sigma
                )));
            }
        }
        if let Some(s) = &self.solarize {
            prob("solarize.p", s.p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_fills_defaults() {
        let spec = AugmentSpec::authors();
        let json = serde_json::to_string(&spec).expect("serialise");
        assert_eq!(
            serde_json::from_str::<AugmentSpec>(&json).expect("parse"),
            spec
        );
        let partial: AugmentSpec =
            serde_json::from_str(r#"{"crop": {}, "blur": {"kernel_size": 3, "p": 0.5}}"#)
                .expect("parse");
        assert_eq!(partial.crop.expect("crop").scale, [0.08, 1.0]);
        assert_eq!(partial.blur.expect("blur").sigma, [0.1, 2.0]);
        assert!(
            serde_json::from_str::<AugmentSpec>(r#"{"flip": 0.5}"#).is_err(),
            "unknown fields are errors"
        );
    }

    #[test]
    fn validate_rejects_out_of_range_parameters() {
        assert!(AugmentSpec::simclr().validate().is_ok());
        let bad = [
            AugmentSpec {
                flip_p: 1.5,
                ..AugmentSpec::simclr()
            },
            AugmentSpec {
                crop: Some(CropSpec {
                    scale: [0.5, 0.2],
                    ratio: default_ratio(),
                }),
                ..AugmentSpec::simclr()
            },
            AugmentSpec {
                blur: Some(BlurSpec {
                    kernel_size: 4,
                    sigma: default_sigma(),
                    p: 0.5,
                }),
                ..AugmentSpec::simclr()
            },
            AugmentSpec {
                jitter: Some(JitterSpec {
                    brightness: 0.4,
                    contrast: 0.4,
                    saturation: 0.4,
                    hue: 0.7,
                    p: 0.8,
                }),
                ..AugmentSpec::simclr()
            },
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
    }
}
