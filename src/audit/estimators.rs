//! How much the second encoder buys: the audit's membership evaluations made with each
//! estimator an audit can compute (docs/science.md#one-model-scores), side by side: SSLMem
//! (needs `g`), `f`'s raw alignment, and the two one-model scores calibrated on the reference
//! population. Each is oriented so that a higher value means "more likely a member".

use serde::{Deserialize, Serialize};

use super::{Record, SplitSet};
use crate::membership::{evaluate, Membership};
use crate::score::calibrate::Calibrated;

/// A per-image membership signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Estimator {
    /// The two-model SSLMem score, `align_g - align_f`.
    Sslmem,
    /// `f`'s alignment alone, negated: `-align_f`.
    AlignF,
    /// The alignment's percentile among the reference images', as `1 - align_f_percentile`.
    AlignFPercentile,
    /// The local calibration: the nearest reference images' mean alignment minus the image's.
    KnnGap,
}

crate::choice!(Estimator, "estimator", {
    Sslmem = "sslmem" => "The two-model SSLMem score, align_g - align_f.",
    AlignF = "align-f" => "f's alignment alone, negated: -align_f.",
    AlignFPercentile = "align-f-percentile" => "1 - the percentile of align_f among the reference images'.",
    KnnGap = "knn-gap" => "The k nearest reference images' mean align_f minus the image's.",
});

impl Estimator {
    /// Every estimator, in the order tables list them.
    pub const ALL: [Estimator; 4] = [
        Estimator::Sslmem,
        Estimator::AlignF,
        Estimator::AlignFPercentile,
        Estimator::KnnGap,
    ];

    /// How many encoders it needs and what it is calibrated on, in a few words.
    pub fn needs(self) -> &'static str {
        match self {
            Estimator::Sslmem => "f and g",
            Estimator::AlignF => "f only, uncalibrated",
            Estimator::AlignFPercentile | Estimator::KnnGap => "f and a reference population",
        }
    }

    /// The record's value, oriented so that higher is more member-like; `None` where the
    /// record or the audit lacks what the estimator needs, or the value is not finite.
    pub fn member_score(self, r: &Record, c: Option<&Calibrated>) -> Option<f64> {
        let v = match self {
            Estimator::Sslmem => r.score.as_ref().map(|s| s.score),
            Estimator::AlignF => r.align_f().map(|a| -a),
            Estimator::AlignFPercentile => c?.align_f_percentile.map(|p| 1.0 - p),
            Estimator::KnnGap => c?.knn_gap,
        }?;
        v.is_finite().then_some(v)
    }
}

/// One estimator's membership evaluation of one pair of sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimatorMembership {
    pub estimator: Estimator,
    #[serde(flatten)]
    pub membership: Membership,
}

/// The pairs of sets evaluated: members of `f` against images neither encoder saw.
pub const PAIRS: [(SplitSet, SplitSet); 2] = [
    (SplitSet::Candidate, SplitSet::Extra),
    (SplitSet::CanaryCandidate, SplitSet::CanaryHeldout),
];

/// Every estimator's evaluation of every pair of sets that was audited, where the estimator
/// has values for both (`calibrated[i]` is record `i`'s calibration, if any). The bootstrap
/// is seeded from `seed`, the same for every estimator.
pub fn compare(
    records: &[Record],
    calibrated: &[Option<Calibrated>],
    seed: u64,
) -> Vec<EstimatorMembership> {
    let mut out = Vec::new();
    for (m, n) in PAIRS {
        for e in Estimator::ALL {
            let values = |set: SplitSet| -> Vec<f64> {
                records
                    .iter()
                    .zip(
                        calibrated
                            .iter()
                            .map(Option::as_ref)
                            .chain(std::iter::repeat(None)),
                    )
                    .filter(|(r, _)| r.set == set)
                    .filter_map(|(r, c)| e.member_score(r, c))
                    .collect()
            };
            if let Some(membership) = evaluate(m, &values(m), n, &values(n), seed) {
                out.push(EstimatorMembership {
                    estimator: e,
                    membership,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{estimate, estimate_alignment};

    fn pair(set: SplitSet, i: usize, d_f: f64, d_g: f64) -> Record {
        Record {
            set,
            index: i,
            input: format!("x#{i}"),
            label: None,
            score: Some(estimate(&[d_f], &[d_g])),
            alignment: None,
            per_encoder: None,
            error: None,
        }
    }

    #[test]
    fn each_estimator_is_oriented_so_that_members_score_higher() {
        // Members: tight under f (0.1), loose under g (0.5). Non-members: 0.4 under both.
        let mut records: Vec<Record> = (0..3)
            .map(|i| pair(SplitSet::Candidate, i, 0.1, 0.5))
            .collect();
        records.extend((3..6).map(|i| pair(SplitSet::Extra, i, 0.4, 0.4)));
        let cal = |p: f64, gap: f64| {
            Some(Calibrated {
                align_f_percentile: Some(p),
                knn_gap: Some(gap),
            })
        };
        let calibrated: Vec<Option<Calibrated>> = (0..6)
            .map(|i| if i < 3 { cal(0.0, 0.3) } else { cal(0.5, 0.0) })
            .collect();
        let got = compare(&records, &calibrated, 1);
        let names: Vec<Estimator> = got.iter().map(|e| e.estimator).collect();
        assert_eq!(names, Estimator::ALL);
        for e in &got {
            assert_eq!(e.membership.auc, 1.0, "{:?}", e.estimator);
            assert_eq!((e.membership.n_members, e.membership.n_non_members), (3, 3));
        }
        // Without calibrations only SSLMem and the raw alignment are evaluated.
        let got = compare(&records, &[], 1);
        let names: Vec<Estimator> = got.iter().map(|e| e.estimator).collect();
        assert_eq!(names, [Estimator::Sslmem, Estimator::AlignF]);
        // A one-model record has no SSLMem score, and its alignment is used.
        let one = Record {
            score: None,
            alignment: Some(estimate_alignment(&[0.2, 0.4])),
            ..pair(SplitSet::Candidate, 0, 0.0, 0.0)
        };
        assert_eq!(Estimator::Sslmem.member_score(&one, None), None);
        let a = Estimator::AlignF.member_score(&one, None).expect("align");
        assert!((a + 0.3).abs() < 1e-12);
    }
}
