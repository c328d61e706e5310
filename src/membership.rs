//! Membership-style evaluation of scores, the way privacy auditors read them: how well does a
//! score separate *members* (examples an encoder was trained on) from *non-members*? The ROC
//! curve, its area (AUC) with a seeded bootstrap interval, and the true-positive rate at a
//! fixed low false-positive rate (Carlini et al., "Membership Inference Attacks From First
//! Principles", 2022, argue for TPR at low FPR over AUC).
//!
//! Convention: a higher score means "more likely a member"; an example is called a member
//! when its score is `>= threshold`. Conventions follow scikit-learn's `roc_curve` and
//! `roc_auc_score` (ties count one half), so figures can be checked there.

use serde::{Deserialize, Serialize};

use crate::data::split::SplitSet;
use crate::rng::Rng;

/// One operating point of the ROC curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Examples with a score `>= threshold` are called members (`+inf`: nobody).
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// The ROC curve of `members` against `non_members`, from (0, 0) to (1, 1), one point per
/// distinct score (scikit-learn's `roc_curve` with `drop_intermediate=False`). Empty when
/// either sample is empty. Non-finite scores must be filtered first.
pub fn roc_curve(members: &[f64], non_members: &[f64]) -> Vec<RocPoint> {
    if members.is_empty() || non_members.is_empty() {
        return Vec::new();
    }
    let mut all: Vec<(f64, bool)> = members
        .iter()
        .map(|&s| (s, true))
        .chain(non_members.iter().map(|&s| (s, false)))
        .collect();
    // Descending by score: lowering the threshold admits examples in this order.
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (p, n) = (members.len() as f64, non_members.len() as f64);
    let mut curve = vec![RocPoint {
        threshold: f64::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < all.len() {
        let t = all[i].0;
        while i < all.len() && all[i].0 == t {
            if all[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        curve.push(RocPoint {
            threshold: t,
            fpr: fp as f64 / n,
            tpr: tp as f64 / p,
        });
    }
    curve
}

/// Area under the ROC curve: the probability that a random member scores above a random
/// non-member, ties counting one half (the Mann–Whitney U statistic over `n_m * n_n`;
/// scikit-learn's `roc_auc_score`). `None` when either sample is empty.
pub fn auc(members: &[f64], non_members: &[f64]) -> Option<f64> {
    let (u, _) = crate::stats::u_statistic(members, non_members)?;
    Some(u / (members.len() as f64 * non_members.len() as f64))
}

/// The best true-positive rate with a false-positive rate at most `target`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TprAtFpr {
    /// The false-positive rate asked for, e.g. 0.01.
    pub target_fpr: f64,
    /// `false` when there are fewer than `1 / target_fpr` non-members: at that size a
    /// single false positive already exceeds the target, so no figure is given.
    pub reachable: bool,
    /// Best TPR among thresholds with FPR `<= target_fpr`; `None` when not reachable.
    pub tpr: Option<f64>,
    /// The FPR actually achieved at that threshold (at most the target).
    pub fpr: Option<f64>,
    /// Scores `>=` this are called members.
    pub threshold: Option<f64>,
    pub non_members: usize,
}

/// TPR at a fixed FPR (see [`TprAtFpr`]). Needs at least `ceil(1 / target_fpr)`
/// non-members to be `reachable`.
pub fn tpr_at_fpr(members: &[f64], non_members: &[f64], target_fpr: f64) -> TprAtFpr {
    let needed = (1.0 / target_fpr).ceil();
    let reachable = !members.is_empty() && non_members.len() as f64 >= needed;
    let best = reachable
        .then(|| {
            roc_curve(members, non_members)
                .into_iter()
                .filter(|p| p.fpr <= target_fpr + 1e-12 && p.threshold.is_finite())
                .max_by(|a, b| a.tpr.total_cmp(&b.tpr).then(b.fpr.total_cmp(&a.fpr)))
        })
        .flatten();
    TprAtFpr {
        target_fpr,
        reachable,
        // No finite threshold keeps FPR within the target (the highest score is a
        // non-member's): nobody is called a member.
        tpr: reachable.then(|| best.map_or(0.0, |p| p.tpr)),
        fpr: reachable.then(|| best.map_or(0.0, |p| p.fpr)),
        threshold: best.map(|p| p.threshold),
        non_members: non_members.len(),
    }
}

/// Percentile bootstrap interval of the AUC: members and non-members are resampled with
/// replacement separately (stratified), `resamples` times, from `seed`.
pub fn auc_bootstrap_ci(
    members: &[f64],
    non_members: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<[f64; 2]> {
    if members.is_empty() || non_members.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = Rng::from_seed(seed ^ 0x0042_4F4F_5453);
    let mut draw = |x: &[f64]| -> Vec<f64> {
        (0..x.len())
            .map(|_| x[rng.below(x.len() as u64) as usize])
            .collect()
    };
    let mut aucs: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let m = draw(members);
            let n = draw(non_members);
            auc(&m, &n)
        })
        .collect();
    aucs.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some([
        crate::stats::quantile_sorted(&aucs, tail),
        crate::stats::quantile_sorted(&aucs, 1.0 - tail),
    ])
}

/// Everything an audit reports for one members-vs-non-members comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// The set of members, e.g. `candidate`.
    pub members: SplitSet,
    /// The set of non-members, e.g. `extra`.
    pub non_members: SplitSet,
    pub n_members: usize,
    pub n_non_members: usize,
    pub auc: f64,
    /// 95% percentile bootstrap interval of the AUC.
    pub auc_ci95: [f64; 2],
    pub bootstrap_resamples: usize,
    pub bootstrap_seed: u64,
    /// At FPR 1% and 0.1%.
    pub tpr_at_fpr: Vec<TprAtFpr>,
    /// The full curve, for the figure (not serialised: `scores.csv` has the data).
    #[serde(skip)]
    pub roc: Vec<RocPoint>,
}

/// Bootstrap resamples used by audits.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// The low false-positive rates reported.
pub const LOW_FPRS: [f64; 2] = [0.01, 0.001];

/// Evaluates `members` against `non_members`; `None` when either is empty.
pub fn evaluate(
    members_name: SplitSet,
    members: &[f64],
    non_members_name: SplitSet,
    non_members: &[f64],
    seed: u64,
) -> Option<Membership> {
    let auc = auc(members, non_members)?;
    let auc_ci95 = auc_bootstrap_ci(members, non_members, BOOTSTRAP_RESAMPLES, 0.95, seed)?;
    Some(Membership {
        members: members_name,
        non_members: non_members_name,
        n_members: members.len(),
        n_non_members: non_members.len(),
        auc,
        auc_ci95,
        bootstrap_resamples: BOOTSTRAP_RESAMPLES,
        bootstrap_seed: seed,
        tpr_at_fpr: LOW_FPRS
            .iter()
            .map(|&f| tpr_at_fpr(members, non_members, f))
            .collect(),
        roc: roc_curve(members, non_members),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: scikit-learn 1.x, `roc_auc_score(y, s)` and
    // `roc_curve(y, s, drop_intermediate=False)` with y = [1]*len(M) + [0]*len(N).
    const M: [f64; 8] = [0.9, 0.8, 0.8, 0.55, 0.4, 0.35, 0.3, 0.1];
    const N: [f64; 7] = [0.7, 0.6, 0.55, 0.5, 0.3, 0.2, 0.05];

    #[test]
    fn auc_matches_scikit_learn() {
        // roc_auc_score -> 0.625 (ties at 0.55 and 0.3 count one half).
        let a = auc(&M, &N).expect("auc");
        assert!((a - 0.625).abs() < 1e-12, "{a}");
        // The Mann-Whitney identity, counted by hand.
        let mut u = 0.0;
        for m in M {
            for n in N {
                u += if m > n {
                    1.0
                } else if m == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        assert!((a - u / 56.0).abs() < 1e-12);
        assert_eq!(auc(&[1.0], &[0.0]), Some(1.0));
        assert_eq!(auc(&[0.0], &[1.0]), Some(0.0));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    #[test]
    fn curve_matches_scikit_learn() {
        // roc_curve(..., drop_intermediate=False), fpr * 7 and tpr * 8, at thresholds
        // inf .9 .8 .7 .6 .55 .5 .4 .35 .3 .2 .1 .05:
        let c = roc_curve(&M, &N);
        let fpr: Vec<f64> = c.iter().map(|p| p.fpr * 7.0).collect();
        let tpr: Vec<f64> = c.iter().map(|p| p.tpr * 8.0).collect();
        let want_f_full = [0., 0., 0., 1., 2., 3., 4., 4., 4., 5., 6., 6., 7.];
        let want_t_full = [0., 1., 3., 3., 3., 4., 4., 5., 6., 7., 7., 8., 8.];
        assert_eq!(c.len(), 13);
        for (got, want) in fpr.iter().zip(want_f_full) {
            assert!((got - want).abs() < 1e-9, "{fpr:?}");
        }
        for (got, want) in tpr.iter().zip(want_t_full) {
            assert!((got - want).abs() < 1e-9, "{tpr:?}");
        }
        assert!(c[0].threshold.is_infinite());
        assert_eq!(c[5].threshold, 0.55);
        // The area under this curve (trapezoids: a tie group is a diagonal step) is the AUC.
        let area: f64 = c
            .windows(2)
            .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
            .sum();
        assert!((area - 0.625).abs() < 1e-12, "{area}");
    }

    #[test]
    fn tpr_at_low_fpr() {
        // 1,000 non-members 0..999 (/1000), members spread above: TPR at FPR 1% is the share
        // of members above the 10th highest non-member. scikit-learn's roc_curve, best TPR
        // with fpr <= target: (tpr 0.6, fpr 0.01, threshold 0.99) and (0.51, 0.001, 0.999).
        let non: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        let mem: Vec<f64> = (0..100).map(|i| 0.95 + f64::from(i) / 1000.0).collect();
        let r = tpr_at_fpr(&mem, &non, 0.01);
        assert!(r.reachable);
        // Threshold 0.99 admits non-members 0.990..0.999 (10 = 1%) and members >= 0.99 (60).
        assert_eq!(r.threshold, Some(0.99));
        assert_eq!(r.fpr, Some(0.01));
        assert_eq!(r.tpr, Some(0.6));
        // Threshold 0.999 admits one non-member (0.1%) and members 0.999..1.049 (51).
        let r = tpr_at_fpr(&mem, &non, 0.001);
        assert_eq!(r.threshold, Some(0.999));
        assert_eq!((r.fpr, r.tpr), (Some(0.001), Some(0.51)));
        // Too few non-members for 0.1%: no number.
        let r = tpr_at_fpr(&mem, &non[..500], 0.001);
        assert!(!r.reachable);
        assert_eq!((r.tpr, r.fpr, r.threshold), (None, None, None));
        // The highest score is a non-member's: nobody can be called a member at FPR 0.
        let r = tpr_at_fpr(&[0.5], &[1.0; 100], 0.01);
        assert_eq!((r.tpr, r.fpr, r.threshold), (Some(0.0), Some(0.0), None));
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_auc() {
        let a = auc_bootstrap_ci(&M, &N, 500, 0.95, 3).expect("ci");
        assert_eq!(a, auc_bootstrap_ci(&M, &N, 500, 0.95, 3).expect("ci"));
        assert_ne!(a, auc_bootstrap_ci(&M, &N, 500, 0.95, 4).expect("ci"));
        let point = auc(&M, &N).expect("auc");
        assert!(a[0] < point && point < a[1], "{a:?} vs {point}");
        // Perfect separation has no spread.
        assert_eq!(
            auc_bootstrap_ci(&[2.0, 3.0], &[0.0, 1.0], 100, 0.95, 0),
            Some([1.0, 1.0])
        );
    }
}
