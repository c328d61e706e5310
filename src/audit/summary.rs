//! `summary.json` of an audit: per set and per class, descriptive statistics and the share
//! of examples whose score is significantly above zero; two-sample tests of each set against
//! `shared`; and the expected-sign checks of docs/science.md#expected-signs as pass/fail lines.
//!
//! [`Summary`] is the file's record: `summary.json` is it serialized, and the HTML report
//! reads the same struct.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::estimators::EstimatorMembership;
use super::one_model::OneModelSummary;
use super::{AuditParams, Record, SplitSet};
use crate::augment::AugmentSpec;
use crate::bundle::Bundle;
use crate::error::Result;
use crate::membership::Membership;
pub use crate::stats::Spread;
use crate::stats::{
    describe, mann_whitney, spearman, student_t, welch_t, MannWhitney, Spearman, TTest,
};

/// Significance level of the expected-sign checks.
pub const ALPHA: f64 = 0.05;
/// Level at which extra and shared must not differ.
pub const ALPHA_SAME: f64 = 0.01;
/// "Near zero" for shared and extra: |mean| at most this fraction of the candidate mean.
pub const NEAR_ZERO_FRACTION: f64 = 0.25;
/// The `format` of `summary.json`.
pub const FORMAT: &str = "sslmem-audit/1";

/// `summary.json`. Maps keyed by set are in [`SplitSet`]'s order, the order the sets are
/// scored in; the lists of an older summary that lacks them read as empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`FORMAT`].
    pub format: String,
    /// The audited bundle.
    pub bundle: BundleInfo,
    /// What the audit was run with (a rerun with other parameters is refused).
    pub params: AuditParams,
    /// What the score is, in words.
    pub score: String,
    /// Statistics of each set's scores.
    #[serde(default)]
    pub sets: BTreeMap<SplitSet, Group>,
    /// The same per label, for the sets whose examples have labels.
    #[serde(default)]
    pub classes: BTreeMap<SplitSet, BTreeMap<u8, Group>>,
    /// Each set against its reference set (the split sets against `shared`, or against
    /// `extra` when no shared set was audited; the canary sets against `canary-heldout`),
    /// for the pairs that were both audited.
    #[serde(default)]
    pub tests: Vec<SetTest>,
    /// Per set, Spearman's correlation of score and typicality; `None` below three
    /// examples or without spread.
    #[serde(default)]
    pub typicality: BTreeMap<SplitSet, Option<Spearman>>,
    /// Membership-style evaluations of the score (see [`membership`]).
    #[serde(default)]
    pub membership: Vec<Membership>,
    /// The membership evaluations made with each estimator the audit could compute
    /// (SSLMem; `f`'s raw alignment; with a reference, the calibrated one-model scores),
    /// side by side: how much the second encoder buys ([`super::estimators`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimators: Vec<EstimatorMembership>,
    /// A one-model audit's per-set statistics (the bundle has no `g`); absent for a pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_model: Option<OneModelSummary>,
    /// A many-model audit's design, interval widths and per-encoder membership tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub many_model: Option<super::many_model::ManyModelSummary>,
    /// LayerMem and ΔLayerMem of the candidates per layer ([`super::layer_mem`]); absent when
    /// the bundle lists no layers, has no `g` or no candidate was audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_mem: Option<super::layer_mem::LayerMem>,
    /// The expected-sign checks and the canary check.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Examples that could not be scored.
    #[serde(default)]
    pub failed: Vec<Failure>,
}

/// The audited bundle, as `summary.json` names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// The bundle folder, as given.
    pub path: String,
    /// The manifest's `name`.
    pub name: Option<String>,
    /// Paths of the `f` encoders inside the bundle.
    pub f: Vec<String>,
    /// Paths of the `g` encoders inside the bundle.
    pub g: Vec<String>,
    /// The manifest's training augmentations (`None`: SimCLR's defaults).
    pub augment: Option<AugmentSpec>,
}

/// The statistics of one group of records (a set, or a class within a set). Scores are
/// distances (see `score` in [`Summary`]); non-finite ones are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Finite scores in the group.
    pub count: usize,
    /// Their mean, spread and quantiles; `None` (the fields left out) without scores.
    #[serde(flatten)]
    pub spread: Option<Spread>,
    /// Mean of the finite `ratio` scores, in [-1, 1].
    pub score_ratio_mean: Option<f64>,
    /// Examples whose 95% interval lies above zero.
    pub significant_positive: usize,
    /// `significant_positive` over `count`; `None` without scores.
    pub significant_positive_fraction: Option<f64>,
}

/// Two-sample tests of set `a`'s scores against set `b`'s (`None`: the test is undefined for
/// these samples, e.g. fewer than two values or no spread).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetTest {
    /// The set tested.
    pub a: SplitSet,
    /// Its reference set.
    pub b: SplitSet,
    /// mean(a) - mean(b).
    pub mean_difference: f64,
    /// Student's t-test (pooled variance).
    pub student: Option<TTest>,
    /// Welch's t-test.
    pub welch: Option<TTest>,
    /// The Mann–Whitney U test.
    pub mann_whitney: Option<MannWhitney>,
}

/// One pass/fail line: what is checked, the rule in words, the figures it rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, e.g. `candidate above shared`.
    pub check: String,
    /// The rule, in words.
    pub rule: String,
    /// The figures checked.
    #[serde(flatten)]
    pub value: CheckValue,
    /// Whether the rule holds.
    pub pass: bool,
}

/// The figures of a [`Check`], written between its `rule` and `pass`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckValue {
    /// A membership AUC, in [0, 1], with its 95% bootstrap interval.
    Auc { auc: f64, auc_ci95: [f64; 2] },
    /// A set's mean score against the candidate mean.
    NearZero { mean: f64, candidate_mean: f64 },
    /// A Welch t-test: statistic and p-value (`None` when the test is undefined). Last, as
    /// its fields are all optional: it would read any of the others.
    Test { t: Option<f64>, p: Option<f64> },
}

/// An example that could not be scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The set it belongs to.
    pub set: SplitSet,
    /// Its index in the set's dataset (or among the inputs).
    pub index: usize,
    /// Its name, e.g. `fashion-mnist:train#12` or a file path.
    pub input: String,
    /// Why it could not be read or scored.
    pub error: String,
}

/// The statistics of one group of records.
fn group(records: &[&Record]) -> Group {
    let scores: Vec<f64> = records
        .iter()
        .filter_map(|r| r.score.as_ref().map(|s| s.score))
        .filter(|v| v.is_finite())
        .collect();
    let ratios: Vec<f64> = records
        .iter()
        .filter_map(|r| r.score.as_ref().map(|s| s.score_ratio))
        .filter(|v| v.is_finite())
        .collect();
    let significant = records
        .iter()
        .filter_map(|r| r.score.as_ref())
        .filter(|s| s.ci95.is_some_and(|c| c[0] > 0.0))
        .count();
    Group {
        count: scores.len(),
        spread: describe(&scores).map(Spread::from),
        score_ratio_mean: describe(&ratios).map(|d| d.mean),
        significant_positive: significant,
        significant_positive_fraction: (!scores.is_empty())
            .then(|| significant as f64 / scores.len() as f64),
    }
}

fn scores_of(records: &[Record], set: SplitSet) -> Vec<f64> {
    records
        .iter()
        .filter(|r| r.set == set)
        .filter_map(|r| r.score.as_ref().map(|s| s.score))
        .filter(|v| v.is_finite())
        .collect()
}

/// The summary of an audit's records: `typicality` is per record (`None` where unknown),
/// `membership` comes from [`membership`].
pub fn summarize(
    bundle: &Bundle,
    params: &AuditParams,
    records: &[Record],
    typicality: &[Option<f64>],
    membership: &[Membership],
) -> Result<Summary> {
    let sets = super::sets_of(records);
    let mut by_set = BTreeMap::new();
    let mut by_class = BTreeMap::new();
    for &set in &sets {
        let rs: Vec<&Record> = records.iter().filter(|r| r.set == set).collect();
        by_set.insert(set, group(&rs));
        let mut labels: Vec<u8> = rs.iter().filter_map(|r| r.label).collect();
        labels.sort_unstable();
        labels.dedup();
        if !labels.is_empty() {
            let classes = labels
                .into_iter()
                .map(|l| {
                    let rl: Vec<&Record> =
                        rs.iter().copied().filter(|r| r.label == Some(l)).collect();
                    (l, group(&rl))
                })
                .collect();
            by_class.insert(set, classes);
        }
    }

    let tests = set_tests(records, &sets);

    // Are the most memorized the atypical ones? Rank correlation of score and typicality.
    let mut typ = BTreeMap::new();
    for &set in &sets {
        let (x, y): (Vec<f64>, Vec<f64>) = records
            .iter()
            .zip(typicality)
            .filter(|(r, _)| r.set == set)
            .filter_map(|(r, t)| Some((r.score.as_ref()?.score, (*t)?)))
            .unzip();
        typ.insert(set, spearman(&x, &y));
    }

    let mut checks = expected_signs(records);
    checks.extend(canary_check(membership));
    let failed = records
        .iter()
        .filter_map(|r| {
            Some(Failure {
                set: r.set,
                index: r.index,
                input: r.input.clone(),
                error: r.error.clone()?,
            })
        })
        .collect();
    let m = &bundle.manifest;
    Ok(Summary {
        format: FORMAT.into(),
        bundle: BundleInfo {
            path: bundle.dir.display().to_string(),
            name: m.name.clone(),
            f: m.f.iter().map(|x| x.path.clone()).collect(),
            g: m.g.iter().map(|x| x.path.clone()).collect(),
            augment: m.augment.clone(),
        },
        params: params.clone(),
        score: "raw: align_g - align_f (docs/science.md#per-image-score-standard-error-and-interval); significant: the 95% interval over view pairs lies above 0".into(),
        sets: by_set,
        classes: by_class,
        tests,
        typicality: typ,
        membership: membership.to_vec(),
        estimators: Vec::new(),
        one_model: None,
        many_model: None,
        layer_mem: None,
        checks,
        failed,
    })
}

/// Each set against its reference: the split sets against shared (against extra, the
/// non-members, when no shared set was audited), the canary sets against the held-out
/// canaries; only pairs of sets that both have scores.
fn set_tests(records: &[Record], sets: &[SplitSet]) -> Vec<SetTest> {
    let mut tests = Vec::new();
    let reference = if sets.contains(&SplitSet::Shared) {
        SplitSet::Shared
    } else {
        SplitSet::Extra
    };
    for (a, b) in [
        (SplitSet::Candidate, reference),
        (SplitSet::Independent, reference),
        (SplitSet::Extra, SplitSet::Shared),
        (SplitSet::CanaryCandidate, SplitSet::CanaryHeldout),
        (SplitSet::CanaryIndependent, SplitSet::CanaryHeldout),
    ] {
        if a == b {
            continue;
        }
        let (x, y) = (scores_of(records, a), scores_of(records, b));
        if x.is_empty() || y.is_empty() {
            continue;
        }
        tests.push(SetTest {
            a,
            b,
            mean_difference: describe(&x).map(|d| d.mean).unwrap_or(f64::NAN)
                - describe(&y).map(|d| d.mean).unwrap_or(f64::NAN),
            student: student_t(&x, &y),
            welch: welch_t(&x, &y),
            mann_whitney: mann_whitney(&x, &y),
        });
    }
    tests
}

/// Canary AUC at or above which the positive control counts as detected.
pub const CANARY_AUC_PASS: f64 = 0.95;

/// Membership-style evaluations of the score: (a) candidate (members of `f`) against extra
/// (seen by neither), (b) candidate canaries against held-out canaries. Only those whose
/// sets were audited. The bootstrap is seeded from the audit's seed.
pub fn membership(records: &[Record], seed: u64) -> Vec<Membership> {
    [
        (SplitSet::Candidate, SplitSet::Extra),
        (SplitSet::CanaryCandidate, SplitSet::CanaryHeldout),
    ]
    .into_iter()
    .filter_map(|(m, n)| {
        crate::membership::evaluate(m, &scores_of(records, m), n, &scores_of(records, n), seed)
    })
    .collect()
}

/// The positive control: candidate canaries must be told from held-out ones.
fn canary_check(membership: &[Membership]) -> Option<Check> {
    let m = membership
        .iter()
        .find(|m| m.members == SplitSet::CanaryCandidate)?;
    Some(Check {
        check: "canary-candidate separated from canary-heldout".into(),
        rule: format!("ROC AUC of the score >= {CANARY_AUC_PASS}"),
        value: CheckValue::Auc {
            auc: m.auc,
            auc_ci95: m.auc_ci95,
        },
        pass: m.auc >= CANARY_AUC_PASS,
    })
}

/// The expected signs of docs/science.md#expected-signs: candidate above shared and extra
/// (Welch, one-sided, at [`ALPHA`]), independent below shared, extra not told apart from
/// shared (Welch, two-sided, p at least [`ALPHA_SAME`]), shared and extra near zero (|mean|
/// at most [`NEAR_ZERO_FRACTION`] of the candidate mean). Only checks whose sets were audited.
pub fn expected_signs(records: &[Record]) -> Vec<Check> {
    let s = |n| scores_of(records, n);
    let (cand, shared, indep, extra) = (
        s(SplitSet::Candidate),
        s(SplitSet::Shared),
        s(SplitSet::Independent),
        s(SplitSet::Extra),
    );
    let mut out = Vec::new();
    let mut above = |a: &[f64], b: &[f64], what: &str, greater: bool| {
        if a.is_empty() || b.is_empty() {
            return;
        }
        let w = welch_t(a, b);
        let p = w.map(|w| if greater { w.p.greater } else { w.p.less });
        out.push(Check {
            check: what.into(),
            rule: format!("Welch t-test, one-sided, p < {ALPHA}"),
            value: CheckValue::Test {
                t: w.map(|w| w.t),
                p,
            },
            pass: p.is_some_and(|p| p < ALPHA),
        });
    };
    above(&cand, &shared, "candidate above shared", true);
    above(&cand, &extra, "candidate above extra", true);
    above(&indep, &shared, "independent below shared", false);
    // Neither encoder saw extra, both saw shared: nothing should tell them apart.
    if !extra.is_empty() && !shared.is_empty() {
        let w = welch_t(&extra, &shared);
        let p = w.map(|w| w.p.two_sided);
        out.push(Check {
            check: "extra indistinguishable from shared".into(),
            rule: format!("Welch t-test, two-sided, p >= {ALPHA_SAME}"),
            value: CheckValue::Test {
                t: w.map(|w| w.t),
                p,
            },
            pass: p.is_some_and(|p| p >= ALPHA_SAME),
        });
    }
    let cand_mean = describe(&cand).map(|d| d.mean);
    for (name, x) in [(SplitSet::Shared, &shared), (SplitSet::Extra, &extra)] {
        let (Some(c), Some(d)) = (cand_mean, describe(x)) else {
            continue;
        };
        out.push(Check {
            check: format!("{name} near zero"),
            rule: format!("|mean({name})| <= {NEAR_ZERO_FRACTION} x mean(candidate), with mean(candidate) > 0"),
            value: CheckValue::NearZero {
                mean: d.mean,
                candidate_mean: c,
            },
            pass: c > 0.0 && d.mean.abs() <= NEAR_ZERO_FRACTION * c,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::estimate;
    use serde_json::{json, Value};

    /// The checks as `summary.json` writes them.
    fn as_json(checks: &[Check]) -> Vec<Value> {
        checks.iter().map(|c| json!(c)).collect()
    }

    fn rec(set: SplitSet, i: usize, score: f64) -> Record {
        // Two pairs whose differences are score +- 0.001: a tight interval around `score`.
        let s = estimate(&[0.5, 0.5], &[0.5 + score - 0.001, 0.5 + score + 0.001]);
        Record {
            set,
            index: i,
            input: format!("x#{i}"),
            label: Some((i % 2) as u8),
            score: Some(s),
            alignment: None,
            per_encoder: None,
            error: None,
        }
    }

    #[test]
    fn expected_signs_pass_and_fail_as_the_rules_say() {
        let mut r = Vec::new();
        for i in 0..30 {
            let wiggle = (i % 5) as f64 * 0.001;
            r.push(rec(SplitSet::Candidate, i, 0.05 + wiggle));
            r.push(rec(SplitSet::Shared, i, 0.002 - wiggle));
            r.push(rec(SplitSet::Independent, i, -0.04 + wiggle));
            // Extra: the same values as shared, in another order.
            r.push(rec(
                SplitSet::Extra,
                i,
                0.002 - ((i + 2) % 5) as f64 * 0.001,
            ));
        }
        let checks = as_json(&expected_signs(&r));
        assert_eq!(checks.len(), 6);
        assert!(checks.iter().all(|c| c["pass"] == true), "{checks:#?}");

        // No memorization signal: candidate scores exactly like shared.
        let flat: Vec<Record> = r
            .iter()
            .map(|x| {
                let wiggle = (x.index % 5) as f64 * 0.001;
                match x.set {
                    SplitSet::Candidate => rec(SplitSet::Candidate, x.index, 0.002 - wiggle),
                    _ => x.clone(),
                }
            })
            .collect();
        let checks = as_json(&expected_signs(&flat));
        let pass = |name: &str| {
            checks
                .iter()
                .find(|c| c["check"] == name)
                .map(|c| c["pass"].clone())
        };
        assert_eq!(pass("candidate above shared"), Some(json!(false)));
        assert_eq!(pass("shared near zero"), Some(json!(false)));
        assert_eq!(pass("independent below shared"), Some(json!(true)));
        assert_eq!(
            pass("extra indistinguishable from shared"),
            Some(json!(true))
        );

        // Extra shifted well away from shared: the sets are told apart.
        let shifted: Vec<Record> = r
            .iter()
            .map(|x| match x.set {
                SplitSet::Extra => rec(
                    SplitSet::Extra,
                    x.index,
                    0.03 + (x.index % 5) as f64 * 0.001,
                ),
                _ => x.clone(),
            })
            .collect();
        let checks = as_json(&expected_signs(&shifted));
        let c = checks
            .iter()
            .find(|c| c["check"] == "extra indistinguishable from shared")
            .expect("check");
        assert_eq!(c["pass"], json!(false), "{c}");
    }

    #[test]
    fn groups_count_significant_scores() {
        let rs = [
            rec(SplitSet::Candidate, 0, 0.05),
            rec(SplitSet::Candidate, 1, -0.05),
            rec(SplitSet::Candidate, 2, 0.0),
        ];
        let refs: Vec<&Record> = rs.iter().collect();
        let g = json!(group(&refs));
        assert_eq!(g["count"], 3);
        assert_eq!(g["significant_positive"], 1);
        assert!((g["mean"].as_f64().unwrap_or_default()).abs() < 1e-12);
    }

    #[test]
    fn groups_and_checks_read_back_as_written() {
        // A group without scores leaves its statistics out.
        let empty = group(&[]);
        let text = serde_json::to_string(&empty).expect("json");
        assert_eq!(
            text,
            r#"{"count":0,"score_ratio_mean":null,"significant_positive":0,"significant_positive_fraction":null}"#
        );
        assert_eq!(serde_json::from_str::<Group>(&text).expect("group"), empty);
        let full = group(&[&rec(SplitSet::Candidate, 0, 0.05)]);
        let back: Group =
            serde_json::from_str(&serde_json::to_string(&full).expect("json")).expect("group");
        assert_eq!(back, full);
        assert!(back.spread.is_some_and(|s| s.sd.is_none()));

        // One candidate: its Welch tests are undefined (null figures); shared near zero is not.
        let r = [
            rec(SplitSet::Candidate, 0, 0.05),
            rec(SplitSet::Shared, 0, 0.0),
            rec(SplitSet::Shared, 1, 0.01),
        ];
        let mut checks = expected_signs(&r);
        assert_eq!(checks[0].value, CheckValue::Test { t: None, p: None });
        assert!(matches!(checks[1].value, CheckValue::NearZero { .. }));
        checks.push(Check {
            check: "c".into(),
            rule: "r".into(),
            value: CheckValue::Auc {
                auc: 0.5,
                auc_ci95: [0.25, 0.75],
            },
            pass: false,
        });
        let text = serde_json::to_string(&checks).expect("json");
        assert!(text.contains(r#""rule":"r","auc":0.5,"auc_ci95":[0.25,0.75],"pass":false"#));
        assert_eq!(
            serde_json::from_str::<Vec<Check>>(&text).expect("checks"),
            checks
        );
    }
}
