//! Whether an encoder's outputs have collapsed: how many directions they really use.
//!
//! The measure is the effective rank (Roy & Vetterli, "The effective rank: a measure of
//! effective dimensionality", EUSIPCO 2007): with the singular values `σ_i` of the matrix
//! whose rows are the l2-normalised outputs of a set of images, `p_i = σ_i / Σ_j σ_j` and
//! `erank = exp(−Σ_i p_i ln p_i)`, between 1 (every output on one line) and the output's
//! dimension (spread evenly). Joint-embedding methods (BYOL, SimSiam, Barlow Twins, VICReg)
//! can minimise their loss by mapping every image to a few directions; the audit of an
//! encoder that does is unlikely to show memorization (little is left to tell images apart),
//! so a run that collapses must say so. The outputs are not centred (as in the screen that set
//! [`COLLAPSE_FRACTION`]): a direction shared by every output, such as the positive mean of a
//! ReLU representation, counts as one of the directions used.

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

pub use crate::recipe::run::{OutputSpreads, Spread, COLLAPSE_FRACTION, MIN_EPOCHS};

/// The effective rank of singular values `s` (see the module docs); `None` when they sum to
/// zero or are not all finite and non-negative.
pub fn effective_rank_of(s: &[f64]) -> Option<f64> {
    if s.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return None;
    }
    let total: f64 = s.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let entropy: f64 = s
        .iter()
        .map(|v| v / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    Some(entropy.exp())
}

/// The [`Spread`] of outputs `x` (`[n, d]`, one row per image); `None` without rows or when
/// the outputs are not finite.
///
/// Errors: the singular values cannot be computed or read.
pub fn spread(x: &Tensor) -> Result<Option<Spread>> {
    let size = x.size();
    let (n, d) = match size[..] {
        [n, d] => (n, d),
        _ => {
            return Err(Error::Train(format!(
                "collapse check: outputs of shape {size:?}, not [n, d]"
            )))
        }
    };
    if n == 0 || d == 0 {
        return Ok(None);
    }
    let x = x.to_kind(Kind::Double);
    let rows = &x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    let (_, s, _) = tch::no_grad(|| rows.svd(true, false));
    let s = Vec::<f64>::try_from(s.to_device(tch::Device::Cpu))
        .map_err(|e| Error::Train(format!("collapse check: {e}")))?;
    Ok(effective_rank_of(&s).map(|effective_rank| Spread {
        effective_rank,
        dims: d as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_rank_by_hand() {
        // One direction: 1. Four equal values: 4.
        assert_eq!(effective_rank_of(&[3.0, 0.0, 0.0]), Some(1.0));
        assert!((effective_rank_of(&[1.0; 4]).unwrap_or_default() - 4.0).abs() < 1e-12);
        // p = (2/3, 1/3): H = ln 3 - (2/3) ln 2, erank = 3 / 2^(2/3).
        let want = 3.0 / 2f64.powf(2.0 / 3.0);
        assert!((effective_rank_of(&[2.0, 1.0]).unwrap_or_default() - want).abs() < 1e-12);
        assert_eq!(effective_rank_of(&[]), None);
        assert_eq!(effective_rank_of(&[0.0, 0.0]), None);
        assert_eq!(effective_rank_of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn collapsed_outputs_are_told_from_spread_ones() {
        // Every row the same direction (scaled): rank 1 of 64, collapsed.
        let base = Tensor::randn([1, 64], (Kind::Float, tch::Device::Cpu));
        let scales = Tensor::arange_start(1, 201, (Kind::Float, tch::Device::Cpu)).view([200, 1]);
        let one = spread(&(base * scales)).expect("svd").expect("spread");
        // The rows were made in float32: rounding leaves the other singular values ~1e-7.
        assert!(
            (one.effective_rank - 1.0).abs() < 1e-3,
            "{}",
            one.effective_rank
        );
        assert!(one.collapsed());
        // Isotropic Gaussian rows: most of the 64 directions.
        tch::manual_seed(0);
        let wide = Tensor::randn([400, 64], (Kind::Float, tch::Device::Cpu));
        let s = spread(&wide).expect("svd").expect("spread");
        assert!(s.effective_rank > 50.0 && !s.collapsed(), "{s}");
        assert_eq!(s.dims, 64);
        // The threshold: 10% of the dimension.
        assert!(Spread {
            effective_rank: 5.9,
            dims: 64
        }
        .collapsed());
        assert!(!Spread {
            effective_rank: 11.4,
            dims: 64
        }
        .collapsed());
        assert_eq!(
            spread(&Tensor::zeros([0, 8], (Kind::Float, tch::Device::Cpu))).expect("empty"),
            None
        );
    }
}
