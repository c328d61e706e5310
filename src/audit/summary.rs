//! `summary.json` of an audit: per set and per class, descriptive statistics and the share
//! of examples whose score is significantly above zero; two-sample tests of each set against
//! `shared`; and the expected-sign checks of SPEC section 4 as pass/fail lines.

use serde_json::{json, Map, Value};

use super::{AuditParams, Record, SplitSet};
use crate::bundle::Bundle;
use crate::error::Result;
use crate::membership::Membership;
use crate::stats::{describe, mann_whitney, spearman, student_t, welch_t};

/// Significance level of the expected-sign checks.
pub const ALPHA: f64 = 0.05;
/// Level at which extra and shared must not differ.
pub const ALPHA_SAME: f64 = 0.01;
/// "Near zero" for shared and extra: |mean| at most this fraction of the candidate mean.
pub const NEAR_ZERO_FRACTION: f64 = 0.25;

/// The statistics of one group of records.
fn group(records: &[&Record]) -> Value {
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
    let mut m = Map::new();
    m.insert("count".into(), json!(scores.len()));
    if let Some(d) = describe(&scores) {
        if let Value::Object(o) = json!(d) {
            for (k, v) in o {
                if k != "count" {
                    m.insert(k, v);
                }
            }
        }
    }
    m.insert(
        "score_ratio_mean".into(),
        json!(describe(&ratios).map(|d| d.mean)),
    );
    m.insert("significant_positive".into(), json!(significant));
    m.insert(
        "significant_positive_fraction".into(),
        json!((!scores.is_empty()).then(|| significant as f64 / scores.len() as f64)),
    );
    Value::Object(m)
}

fn scores_of(records: &[Record], set: SplitSet) -> Vec<f64> {
    records
        .iter()
        .filter(|r| r.set == set)
        .filter_map(|r| r.score.as_ref().map(|s| s.score))
        .filter(|v| v.is_finite())
        .collect()
}

pub fn summarize(
    bundle: &Bundle,
    params: &AuditParams,
    records: &[Record],
    typicality: &[Option<f64>],
    membership: &[Membership],
) -> Result<Value> {
    let sets = super::sets_of(records);
    let mut by_set = Map::new();
    let mut by_class = Map::new();
    for set in &sets {
        let rs: Vec<&Record> = records.iter().filter(|r| r.set == *set).collect();
        by_set.insert(set.name().into(), group(&rs));
        let mut labels: Vec<u8> = rs.iter().filter_map(|r| r.label).collect();
        labels.sort_unstable();
        labels.dedup();
        if !labels.is_empty() {
            let mut classes = Map::new();
            for l in labels {
                let rl: Vec<&Record> = rs.iter().copied().filter(|r| r.label == Some(l)).collect();
                classes.insert(l.to_string(), group(&rl));
            }
            by_class.insert(set.name().into(), Value::Object(classes));
        }
    }

    // Each set against its reference: the split sets against shared, the canary sets
    // against the held-out canaries.
    let mut tests = Vec::new();
    for (a, b) in [
        (SplitSet::Candidate, SplitSet::Shared),
        (SplitSet::Independent, SplitSet::Shared),
        (SplitSet::Extra, SplitSet::Shared),
        (SplitSet::CanaryCandidate, SplitSet::CanaryHeldout),
        (SplitSet::CanaryIndependent, SplitSet::CanaryHeldout),
    ] {
        let (x, y) = (scores_of(records, a), scores_of(records, b));
        if x.is_empty() || y.is_empty() {
            continue;
        }
        tests.push(json!({
            "a": a,
            "b": b,
            "mean_difference": describe(&x).map(|d| d.mean).unwrap_or(f64::NAN)
                - describe(&y).map(|d| d.mean).unwrap_or(f64::NAN),
            "student": student_t(&x, &y),
            "welch": welch_t(&x, &y),
            "mann_whitney": mann_whitney(&x, &y),
        }));
    }

    // Are the most memorized the atypical ones? Rank correlation of score and typicality.
    let mut typ = Map::new();
    for set in &sets {
        let (x, y): (Vec<f64>, Vec<f64>) = records
            .iter()
            .zip(typicality)
            .filter(|(r, _)| r.set == *set)
            .filter_map(|(r, t)| Some((r.score.as_ref()?.score, (*t)?)))
            .unzip();
        typ.insert(set.name().into(), json!(spearman(&x, &y)));
    }

    let mut checks = expected_signs(records);
    checks.extend(canary_check(membership));
    let failed: Vec<Value> = records
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| json!({"set": r.set, "index": r.index, "input": r.input, "error": e}))
        })
        .collect();
    let m = &bundle.manifest;
    Ok(json!({
        "format": "sslmem-audit/1",
        "bundle": {
            "path": bundle.dir.display().to_string(),
            "name": m.name,
            "f": m.f.iter().map(|x| &x.path).collect::<Vec<_>>(),
            "g": m.g.iter().map(|x| &x.path).collect::<Vec<_>>(),
            "augment": m.augment,
        },
        "params": params,
        "score": "raw: align_g - align_f (SPEC section 2); significant: the 95% interval over view pairs lies above 0",
        "sets": by_set,
        "classes": by_class,
        "tests": tests,
        "typicality": typ,
        "membership": membership,
        "checks": checks,
        "failed": failed,
    }))
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
fn canary_check(membership: &[Membership]) -> Option<Value> {
    let m = membership
        .iter()
        .find(|m| m.members == SplitSet::CanaryCandidate)?;
    Some(json!({
        "check": "canary-candidate separated from canary-heldout",
        "rule": format!("ROC AUC of the score >= {CANARY_AUC_PASS}"),
        "auc": m.auc,
        "auc_ci95": m.auc_ci95,
        "pass": m.auc >= CANARY_AUC_PASS,
    }))
}

/// SPEC section 4's expected signs: candidate above shared and extra (Welch, one-sided, at
/// [`ALPHA`]), independent below shared, extra not told apart from shared (Welch, two-sided,
/// p at least [`ALPHA_SAME`]), shared and extra near zero (|mean| at most
/// [`NEAR_ZERO_FRACTION`] of the candidate mean). Only checks whose sets were audited.
pub fn expected_signs(records: &[Record]) -> Vec<Value> {
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
        out.push(json!({
            "check": what,
            "rule": format!("Welch t-test, one-sided, p < {ALPHA}"),
            "t": w.map(|w| w.t),
            "p": p,
            "pass": p.is_some_and(|p| p < ALPHA),
        }));
    };
    above(&cand, &shared, "candidate above shared", true);
    above(&cand, &extra, "candidate above extra", true);
    above(&indep, &shared, "independent below shared", false);
    // Neither encoder saw extra, both saw shared: nothing should tell them apart.
    if !extra.is_empty() && !shared.is_empty() {
        let w = welch_t(&extra, &shared);
        let p = w.map(|w| w.p.two_sided);
        out.push(json!({
            "check": "extra indistinguishable from shared",
            "rule": format!("Welch t-test, two-sided, p >= {ALPHA_SAME}"),
            "t": w.map(|w| w.t),
            "p": p,
            "pass": p.is_some_and(|p| p >= ALPHA_SAME),
        }));
    }
    let cand_mean = describe(&cand).map(|d| d.mean);
    for (name, x) in [(SplitSet::Shared, &shared), (SplitSet::Extra, &extra)] {
        let (Some(c), Some(d)) = (cand_mean, describe(x)) else {
            continue;
        };
        out.push(json!({
            "check": format!("{name} near zero"),
            "rule": format!("|mean({name})| <= {NEAR_ZERO_FRACTION} x mean(candidate), with mean(candidate) > 0"),
            "mean": d.mean,
            "candidate_mean": c,
            "pass": c > 0.0 && d.mean.abs() <= NEAR_ZERO_FRACTION * c,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::estimate;

    fn rec(set: SplitSet, i: usize, score: f64) -> Record {
        // Two pairs whose differences are score +- 0.001: a tight interval around `score`.
        let s = estimate(&[0.5, 0.5], &[0.5 + score - 0.001, 0.5 + score + 0.001]);
        Record {
            set,
            index: i,
            input: format!("x#{i}"),
            label: Some((i % 2) as u8),
            score: Some(s),
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
        let checks = expected_signs(&r);
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
        let checks = expected_signs(&flat);
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
        let checks = expected_signs(&shifted);
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
        let g = group(&refs);
        assert_eq!(g["count"], 3);
        assert_eq!(g["significant_positive"], 1);
        assert!((g["mean"].as_f64().unwrap_or_default()).abs() < 1e-12);
    }
}
