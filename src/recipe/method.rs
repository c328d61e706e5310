//! [`MethodConfig`]: the self-supervised method a run trains with and its hyperparameters,
//! recorded in the manifest as `{"method": NAME, ...its fields}`.
//!
//! The record is an envelope: the method's name and its hyperparameters as an ordered map of
//! JSON values. What the fields mean, their defaults and ranges, is each method's own business
//! (`crate::train::methods`, with the `train` feature); here the manifest reads and writes them
//! without knowing any method.
//!
//! Records written before the methods were typed held every method's hyperparameters side by
//! side (`{"method":"simclr","temperature":..,"ema_base":..,"vicreg":[..],"barlow_lambda":..}`);
//! they still read, as the method they name with its own fields (a frozen table, `legacy`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The method a run trains with, and its hyperparameters in the order the method declares
/// them. The trainer builds the method from it through its registry
/// (`crate::train::methods::build`), which fills in a left-out hyperparameter with its
/// default and checks each one's range.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodConfig {
    name: String,
    params: Map<String, Value>,
}

impl MethodConfig {
    /// The method `name` with no hyperparameters given (each takes its default when built).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Map::new(),
        }
    }

    /// This config with hyperparameter `field` set to `value` (appended, or replaced in place).
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.params.insert(field.into(), value.into());
        self
    }

    /// The method's name, as `--method` and the records spell it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hyperparameters as recorded, by field name, in order.
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }

    /// The hyperparameters as the method's typed struct `T` (its fields named as the record's).
    ///
    /// Errors: [`Error::Param`] naming the method and serde's complaint (a field missing, of
    /// the wrong type, or one `T` does not know).
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(Value::Object(self.params.clone()))
            .map_err(|e| Error::Param(format!("method {}: {e}", self.name)))
    }
}

impl Serialize for MethodConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1 + self.params.len()))?;
        m.serialize_entry("method", &self.name)?;
        for (k, v) in &self.params {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut params = Map::<String, Value>::deserialize(d)?;
        // Only the flat form of before the typed methods has `vicreg` and `barlow_lambda`.
        if params.contains_key("vicreg") && params.contains_key("barlow_lambda") {
            let flat: FlatMethodConfig =
                serde_json::from_value(Value::Object(params)).map_err(D::Error::custom)?;
            return legacy(&flat).map_err(D::Error::custom);
        }
        match params.remove("method") {
            Some(Value::String(name)) => Ok(Self { name, params }),
            other => Err(D::Error::custom(format!(
                "the method record's `method` is {other:?}, not a name"
            ))),
        }
    }
}

/// Every method's hyperparameters side by side: the form of the training records written
/// before the methods were typed.
#[derive(Deserialize)]
struct FlatMethodConfig {
    method: String,
    temperature: f64,
    ema_base: f64,
    /// VICReg's (invariance, variance, covariance) weights.
    vicreg: (f64, f64, f64),
    barlow_lambda: f64,
}

/// The named method with its own fields from a flat record. The five methods of that time
/// are frozen here: a method added since was never written in this form.
///
/// Errors: [`Error::Param`] when the record names another method.
fn legacy(flat: &FlatMethodConfig) -> Result<MethodConfig> {
    let (sim, var, cov) = flat.vicreg;
    let fields: &[(&str, f64)] = match flat.method.as_str() {
        "simclr" => &[("temperature", flat.temperature)],
        "simsiam" => &[],
        "byol" => &[("ema_base", flat.ema_base)],
        "vicreg" => &[
            ("sim_weight", sim),
            ("var_weight", var),
            ("cov_weight", cov),
        ],
        "barlow" => &[("lambda", flat.barlow_lambda)],
        other => {
            return Err(Error::Param(format!(
                "unknown method '{other}' in a flat method record (one of simclr, simsiam, \
                 byol, vicreg, barlow)"
            )))
        }
    };
    Ok(fields
        .iter()
        .fold(MethodConfig::new(&flat.method), |c, &(k, v)| c.with(k, v)))
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
            MethodConfig::new("simclr").with("temperature", 0.2)
        );
        assert_eq!(read("simsiam"), MethodConfig::new("simsiam"));
        assert_eq!(
            read("byol"),
            MethodConfig::new("byol").with("ema_base", 0.99)
        );
        assert_eq!(
            serde_json::to_string(&read("vicreg")).expect("json"),
            r#"{"method":"vicreg","sim_weight":1.0,"var_weight":2.0,"cov_weight":3.0}"#
        );
        assert_eq!(
            read("barlow"),
            MethodConfig::new("barlow").with("lambda", 0.01)
        );
        assert!(serde_json::from_str::<MethodConfig>(&old("mae")).is_err());
    }

    #[test]
    fn the_envelope_is_written_as_the_method_name_then_its_fields_in_order() {
        let c = MethodConfig::new("vicreg")
            .with("sim_weight", 10.0)
            .with("var_weight", 25.0)
            .with("cov_weight", 1.0);
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
            serde_json::to_string(&MethodConfig::new("simsiam")).expect("json"),
            r#"{"method":"simsiam"}"#
        );
        // A method this version does not know still reads (building it is what fails).
        let dino = serde_json::from_str::<MethodConfig>(r#"{"method":"dino","k":3}"#);
        assert_eq!(dino.expect("read").name(), "dino");
        assert!(serde_json::from_str::<MethodConfig>(r#"{"temperature":1}"#).is_err());
        assert!(serde_json::from_str::<MethodConfig>(r#"{"method":3}"#).is_err());
    }

    #[test]
    fn typed_reads_the_fields_and_names_the_method_when_it_cannot() {
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct T {
            temperature: f64,
        }
        let c = MethodConfig::new("simclr").with("temperature", 0.2);
        assert_eq!(c.typed::<T>().expect("typed"), T { temperature: 0.2 });
        let bad = MethodConfig::new("simclr").with("temperature", "warm");
        assert!(bad
            .typed::<T>()
            .is_err_and(|e| e.to_string().contains("method simclr")));
    }
}
