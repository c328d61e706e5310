//! Each self-supervised method's hyperparameters, typed, with the literature's defaults
//! ([`Default`]: what `sslmem-train pair`'s flags default to), and [`MethodConfig`], the one
//! of them a run uses, recorded in the manifest as `{"method": NAME, ...its fields}`.
//!
//! Records written before the methods were typed held every method's hyperparameters side by
//! side (`{"method":"simclr","temperature":..,"ema_base":..,"vicreg":[..],"barlow_lambda":..}`,
//! [`FlatMethodConfig`]); they still read, as the method they name.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
/// Representations"): the NT-Xent loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimclrConfig {
    /// NT-Xent temperature, above 0 (0.5: SimCLR's CIFAR-10 setting, appendix B.9).
    pub temperature: f64,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        Self { temperature: 0.5 }
    }
}

/// SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning"): no
/// hyperparameters of its own (its predictor is a fixed two-layer MLP).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimsiamConfig {}

/// BYOL (Grill et al. 2020, "Bootstrap Your Own Latent").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ByolConfig {
    /// The target network's EMA momentum at the start, in [0, 1]; it follows a cosine
    /// schedule up to 1 (0.996: section 3.2).
    pub ema_base: f64,
}

impl Default for ByolConfig {
    fn default() -> Self {
        Self { ema_base: 0.996 }
    }
}

/// VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance
/// Regularization"): the weights of its three terms, each 0 or more (25, 25, 1: section 4.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VicregConfig {
    /// Invariance (mean squared error between the views), the paper's λ.
    pub sim_weight: f64,
    /// Variance (hinge on each dimension's standard deviation), the paper's μ; 0 lets the
    /// outputs collapse.
    pub var_weight: f64,
    /// Covariance (off-diagonal covariances), the paper's ν.
    pub cov_weight: f64,
}

impl Default for VicregConfig {
    fn default() -> Self {
        Self {
            sim_weight: 25.0,
            var_weight: 25.0,
            cov_weight: 1.0,
        }
    }
}

/// Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
/// Reduction").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BarlowConfig {
    /// Weight of the off-diagonal (redundancy reduction) term, 0 or more (0.005: section 4).
    pub lambda: f64,
}

impl Default for BarlowConfig {
    fn default() -> Self {
        Self { lambda: 0.005 }
    }
}

/// The method a run trains with, and its hyperparameters. The trainer builds the method from
/// it through its registry (`crate::train::methods::build`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum MethodConfig {
    Simclr(SimclrConfig),
    Simsiam(SimsiamConfig),
    Byol(ByolConfig),
    Vicreg(VicregConfig),
    Barlow(BarlowConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        Self::Simclr(SimclrConfig::default())
    }
}

/// The methods' names, as `--method` and the records spell them.
pub const METHOD_NAMES: &[&str] = &["simclr", "simsiam", "byol", "vicreg", "barlow"];

impl MethodConfig {
    /// The method's name (one of [`METHOD_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Simclr(_) => "simclr",
            Self::Simsiam(_) => "simsiam",
            Self::Byol(_) => "byol",
            Self::Vicreg(_) => "vicreg",
            Self::Barlow(_) => "barlow",
        }
    }

    /// Checks each hyperparameter's range, naming the `sslmem-train` flag that sets it.
    ///
    /// Errors: [`Error::Param`] for the first value out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, v: f64, what: &str| {
            Err(Error::Param(format!("--{flag} is {v}; it must be {what}")))
        };
        let at_least_0 = |pairs: &[(&str, f64)]| {
            for &(flag, v) in pairs {
                if !(v.is_finite() && v >= 0.0) {
                    return bad(flag, v, "0 or more");
                }
            }
            Ok(())
        };
        match self {
            Self::Simclr(c) if !(c.temperature.is_finite() && c.temperature > 0.0) => {
                bad("temperature", c.temperature, "above 0")
            }
            Self::Byol(c) if !(0.0..=1.0).contains(&c.ema_base) => {
                bad("ema-base", c.ema_base, "between 0 and 1")
            }
            Self::Vicreg(c) => at_least_0(&[
                ("vicreg-sim-weight", c.sim_weight),
                ("vicreg-var-weight", c.var_weight),
                ("vicreg-cov-weight", c.cov_weight),
            ]),
            Self::Barlow(c) => at_least_0(&[("barlow-lambda", c.lambda)]),
            _ => Ok(()),
        }
    }

    /// The current form `{"method": NAME, ...fields}`; a field left out takes its default.
    fn from_tagged(mut map: serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let name = match map.remove("method") {
            Some(serde_json::Value::String(s)) => s,
            other => {
                return Err(Error::Param(format!(
                    "the method record's `method` is {other:?}, not a name"
                )))
            }
        };
        let fields = serde_json::Value::Object(map);
        let typed = |e: serde_json::Error| Error::Param(format!("method {name}: {e}"));
        Ok(match name.as_str() {
            "simclr" => Self::Simclr(serde_json::from_value(fields).map_err(typed)?),
            "simsiam" => Self::Simsiam(serde_json::from_value(fields).map_err(typed)?),
            "byol" => Self::Byol(serde_json::from_value(fields).map_err(typed)?),
            "vicreg" => Self::Vicreg(serde_json::from_value(fields).map_err(typed)?),
            "barlow" => Self::Barlow(serde_json::from_value(fields).map_err(typed)?),
            other => return Err(unknown(other)),
        })
    }
}

fn unknown(name: &str) -> Error {
    Error::Param(format!(
        "unknown method '{name}'; known: {}",
        METHOD_NAMES.join(", ")
    ))
}

/// Every method's hyperparameters side by side: the form of the training records written
/// before the methods were typed, and what `sslmem-train pair`'s flags hold (each method's
/// flags exist whichever method is chosen). [`Self::typed`] keeps the chosen method's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlatMethodConfig {
    /// One of [`METHOD_NAMES`].
    pub method: String,
    pub temperature: f64,
    pub ema_base: f64,
    /// VICReg's (invariance, variance, covariance) weights.
    pub vicreg: (f64, f64, f64),
    pub barlow_lambda: f64,
}

impl Default for FlatMethodConfig {
    fn default() -> Self {
        let v = VicregConfig::default();
        Self {
            method: "simclr".into(),
            temperature: SimclrConfig::default().temperature,
            ema_base: ByolConfig::default().ema_base,
            vicreg: (v.sim_weight, v.var_weight, v.cov_weight),
            barlow_lambda: BarlowConfig::default().lambda,
        }
    }
}

impl FlatMethodConfig {
    /// The named method with its hyperparameters from these.
    ///
    /// Errors: [`Error::Param`] when `method` is not one of [`METHOD_NAMES`].
    pub fn typed(&self) -> Result<MethodConfig> {
        let (sim_weight, var_weight, cov_weight) = self.vicreg;
        Ok(match self.method.as_str() {
            "simclr" => MethodConfig::Simclr(SimclrConfig {
                temperature: self.temperature,
            }),
            "simsiam" => MethodConfig::Simsiam(SimsiamConfig {}),
            "byol" => MethodConfig::Byol(ByolConfig {
                ema_base: self.ema_base,
            }),
            "vicreg" => MethodConfig::Vicreg(VicregConfig {
                sim_weight,
                var_weight,
                cov_weight,
            }),
            "barlow" => MethodConfig::Barlow(BarlowConfig {
                lambda: self.barlow_lambda,
            }),
            other => return Err(unknown(other)),
        })
    }
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        // Only the flat form has `vicreg` and `barlow_lambda`.
        let parsed = if map.contains_key("vicreg") && map.contains_key("barlow_lambda") {
            serde_json::from_value::<FlatMethodConfig>(serde_json::Value::Object(map))
                .map_err(D::Error::custom)?
                .typed()
        } else {
            Self::from_tagged(map)
        };
        parsed.map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_before_the_typed_methods_read_as_the_method_they_name() {
        let old = |method: &str| {
            format!(
                r#"{{"method":"{method}","temperature":0.2,"ema_base":0.99,"vicreg":[1.0,2.0,3.0],"barlow_lambda":0.01}}"#
            )
        };
        let read = |m: &str| serde_json::from_str::<MethodConfig>(&old(m)).expect("old record");
        assert_eq!(
            read("simclr"),
            MethodConfig::Simclr(SimclrConfig { temperature: 0.2 })
        );
        assert_eq!(read("simsiam"), MethodConfig::Simsiam(SimsiamConfig {}));
        assert_eq!(
            read("byol"),
            MethodConfig::Byol(ByolConfig { ema_base: 0.99 })
        );
        assert_eq!(
            read("vicreg"),
            MethodConfig::Vicreg(VicregConfig {
                sim_weight: 1.0,
                var_weight: 2.0,
                cov_weight: 3.0
            })
        );
        assert_eq!(
            read("barlow"),
            MethodConfig::Barlow(BarlowConfig { lambda: 0.01 })
        );
        assert!(serde_json::from_str::<MethodConfig>(&old("mae")).is_err());
    }

    #[test]
    fn the_typed_form_round_trips_and_fills_in_defaults() {
        let c = MethodConfig::Vicreg(VicregConfig {
            sim_weight: 10.0,
            ..VicregConfig::default()
        });
        let text = serde_json::to_string(&c).expect("json");
        assert_eq!(
            text,
            r#"{"method":"vicreg","sim_weight":10.0,"var_weight":25.0,"cov_weight":1.0}"#
        );
        assert_eq!(
            serde_json::from_str::<MethodConfig>(&text).expect("read"),
            c
        );
        assert_eq!(
            serde_json::from_str::<MethodConfig>(r#"{"method":"simsiam"}"#).expect("read"),
            MethodConfig::Simsiam(SimsiamConfig {})
        );
        assert_eq!(
            serde_json::from_str::<MethodConfig>(r#"{"method":"simclr"}"#).expect("read"),
            MethodConfig::default()
        );
        assert!(serde_json::from_str::<MethodConfig>(r#"{"method":"dino"}"#).is_err());
        assert!(serde_json::from_str::<MethodConfig>(r#"{"temperature":1}"#).is_err());
    }

    #[test]
    fn every_name_reads_and_every_flag_is_checked() {
        for &name in METHOD_NAMES {
            let flat = FlatMethodConfig {
                method: name.into(),
                ..FlatMethodConfig::default()
            };
            let c = flat.typed().expect("known");
            assert_eq!(c.name(), name);
            c.validate().expect("defaults are valid");
        }
        let bad = MethodConfig::Barlow(BarlowConfig { lambda: -1.0 });
        assert!(bad
            .validate()
            .is_err_and(|e| e.to_string().contains("--barlow-lambda")));
        let bad = MethodConfig::Simclr(SimclrConfig { temperature: 0.0 });
        assert!(bad
            .validate()
            .is_err_and(|e| e.to_string().contains("--temperature")));
    }
}
