//! The lines of a run's training log (`log.jsonl` while it trains, `train-<run>.jsonl` in the
//! bundle): one [`EpochLine`] per epoch, then one [`EvalLine`] once the encoder is exported.
//! Written as JSON lines by serde, fields in the order declared.

use serde::{Deserialize, Serialize};

use super::monitor::MonitorReport;
use super::run::EvalReport;

/// One epoch of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLine {
    /// The run's label (`f0`, `g1`, `top-k100-seed0`, ...).
    pub run: String,
    /// Epochs done, counting this one (1-based).
    pub epoch: usize,
    /// Optimiser steps done, counting this epoch's.
    pub steps: usize,
    /// Mean loss over the epoch's steps.
    pub loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall-clock seconds of the epoch's steps (the monitor and checkpoint not counted).
    pub seconds: f64,
    /// Training images (views counted once per image) per second over those steps.
    pub images_per_second: f64,
    /// The memorization monitor's measurement after this epoch, when it measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memorization: Option<MonitorReport>,
    /// The outputs the measurement found collapsed; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed: Vec<String>,
}

/// The exported encoder's evaluation, the log's last line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalLine {
    pub run: String,
    /// `null` when the dataset has no labels.
    pub eval: Option<EvalReport>,
    /// As [`super::RunRecord::parity_max_rel_err`].
    pub parity_max_rel_err: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_line_has_the_fields_of_the_logs_before_it_was_typed() {
        let line = EpochLine {
            run: "f0".into(),
            epoch: 1,
            steps: 14,
            loss: 4.25,
            lr: 0.015,
            seconds: 0.5,
            images_per_second: 1792.0,
            memorization: None,
            collapsed: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&line).expect("json"),
            r#"{"run":"f0","epoch":1,"steps":14,"loss":4.25,"lr":0.015,"seconds":0.5,"images_per_second":1792.0}"#
        );
        let eval = EvalLine {
            run: "g0".into(),
            eval: None,
            parity_max_rel_err: 2e-7,
        };
        assert_eq!(
            serde_json::to_string(&eval).expect("json"),
            r#"{"run":"g0","eval":null,"parity_max_rel_err":2e-7}"#
        );
    }
}
