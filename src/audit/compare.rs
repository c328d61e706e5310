//! `sslmem compare`: do two audits find the same images memorized? Two audits' `scores.csv`
//! (two methods' pairs, a pair and a many-model bundle, two seeds) matched by input name: the
//! Spearman correlation of their scores, and the overlap of their top fractions against the
//! overlap chance would give (hypergeometric: the top `k` of `n` of one audit drawn at random
//! among the other's ranking).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use statrs::distribution::{DiscreteCDF, Hypergeometric};

use super::scores::read_csv;
use super::SplitSet;
use crate::error::{Error, Result};
use crate::stats::{spearman, Spearman};

/// What `sslmem compare` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The first audit's set compared (the second audit's rows of any set are matched by
    /// input name).
    pub set: SplitSet,
    /// Images scored by both audits.
    pub n: usize,
    /// Spearman's correlation of the two scores over those images; `None` below 3.
    pub spearman: Option<Spearman>,
    /// The top fractions compared.
    pub top: Vec<TopOverlap>,
}

/// The overlap of both audits' top `k` images among the `n` they share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopOverlap {
    /// The fraction asked for (0.1: the top 10%).
    pub fraction: f64,
    /// `ceil(fraction * n)`.
    pub k: usize,
    /// Images in both top-`k` lists.
    pub overlap: usize,
    /// The overlap expected by chance, `k² / n`.
    pub chance: f64,
    /// P(overlap at least this large) by chance: the hypergeometric upper tail
    /// (population `n`, `k` successes, `k` draws).
    pub p_chance: f64,
}

/// The overlap of the top `k` of `a` and of `b` (indices of the same images, scores higher
/// first, ties broken by position) with its chance level.
///
/// # Panics
/// When `a` and `b` differ in length.
pub fn top_overlap(a: &[f64], b: &[f64], fraction: f64) -> TopOverlap {
    assert_eq!(a.len(), b.len(), "scores of the same images");
    let n = a.len();
    let k = ((fraction * n as f64).ceil() as usize).min(n);
    let top = |x: &[f64]| -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| x[j].total_cmp(&x[i]).then(i.cmp(&j)));
        order.truncate(k);
        order.sort_unstable();
        order
    };
    let (ta, tb) = (top(a), top(b));
    let overlap = ta.iter().filter(|i| tb.binary_search(i).is_ok()).count();
    let chance = if n == 0 {
        0.0
    } else {
        (k * k) as f64 / n as f64
    };
    // P(X >= overlap) = 1 - P(X <= overlap - 1).
    let p_chance = match (overlap, Hypergeometric::new(n as u64, k as u64, k as u64)) {
        (0, _) => 1.0,
        (o, Ok(h)) => (1.0 - h.cdf(o as u64 - 1)).clamp(0.0, 1.0),
        (_, Err(_)) => f64::NAN,
    };
    TopOverlap {
        fraction,
        k,
        overlap,
        chance,
        p_chance,
    }
}

/// Compares the audits in folders `a` and `b`: `a`'s rows of `set` against `b`'s rows of the
/// same input (any set), on `score`.
///
/// # Errors
/// When a `scores.csv` cannot be read, a fraction is outside (0, 1], or no image is in
/// both.
pub fn compare(a: &Path, b: &Path, set: SplitSet, fractions: &[f64]) -> Result<Comparison> {
    if let Some(f) = fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
        return Err(Error::Param(format!("--top {f}: a fraction in (0, 1]")));
    }
    let rows_a = read_csv(&a.join("scores.csv"), &["set", "input", "score"])?;
    let rows_b = read_csv(&b.join("scores.csv"), &["set", "input", "score"])?;
    let by_input: BTreeMap<&str, f64> = rows_b
        .iter()
        .filter(|r| r.score.is_finite())
        .map(|r| (r.input.as_str(), r.score))
        .collect();
    let (x, y): (Vec<f64>, Vec<f64>) = rows_a
        .iter()
        .filter(|r| r.set == set && r.score.is_finite())
        .filter_map(|r| Some((r.score, *by_input.get(r.input.as_str())?)))
        .unzip();
    if x.is_empty() {
        return Err(Error::Param(format!(
            "no image of {}'s {set} set is scored in {} (inputs are matched by name)",
            a.display(),
            b.display()
        )));
    }
    Ok(Comparison {
        set,
        n: x.len(),
        spearman: spearman(&x, &y),
        top: fractions.iter().map(|&f| top_overlap(&x, &y, f)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_overlap_and_its_chance_by_hand() {
        // Ten images; a ranks 9, 8, 7, ...; b agrees on images 9 and 8 and puts 0 third.
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let mut b = a.clone();
        b[0] = 8.5;
        b[7] = -1.0;
        let t = top_overlap(&a, &b, 0.3);
        // a's top 3: {9, 8, 7}; b's: {9, 0, 8}.
        assert_eq!((t.k, t.overlap), (3, 2));
        assert!((t.chance - 0.9).abs() < 1e-12);
        // P(X >= 2) for a hypergeometric (N 10, K 3, n 3): (C(3,2)C(7,1) + C(3,3)) / C(10,3)
        // = (21 + 1) / 120.
        assert!((t.p_chance - 22.0 / 120.0).abs() < 1e-9, "{}", t.p_chance);
        let same = top_overlap(&a, &a, 0.1);
        assert_eq!((same.k, same.overlap), (1, 1));
        assert!((same.p_chance - 0.1).abs() < 1e-9);
        let none = top_overlap(&a, &a.iter().map(|v| -v).collect::<Vec<_>>(), 0.2);
        assert_eq!((none.overlap, none.p_chance), (0, 1.0));
    }
}
