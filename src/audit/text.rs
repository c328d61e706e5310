//! What an audit prints when it ends: per set the mean score and the share significantly
//! above zero, each check with its verdict, the membership evaluation, the rank correlation
//! of score and atypicality, and the highest-scoring images, read back from the audit's own
//! `summary.json` and `scores.csv` (so a rerun of a finished audit prints the same text).
//!
//! [`scope`] says what the audit can and cannot conclude from the sets it has; the printed
//! summary and `report.html` open with the same sentences, so that an audit of a folder with
//! no non-member reference cannot be read as a finding.

use std::fmt::Write as _;
use std::path::Path;

use super::scores::{self, ScoreRow};
use super::summary::{CheckValue, Summary};
use super::SplitSet;
use crate::error::{Error, Result};

/// Images listed under "most memorized" (or "highest scores").
pub const TOP: usize = 5;

/// What each set is, in a few words.
pub fn set_meaning(set: SplitSet) -> &'static str {
    match set {
        SplitSet::Candidate => "f saw them, g did not",
        SplitSet::Shared => "both saw them",
        SplitSet::Independent => "g saw them, f did not",
        SplitSet::Extra => "neither saw them",
        SplitSet::CanaryCandidate => "planted canaries f saw",
        SplitSet::CanaryIndependent => "planted canaries g saw",
        SplitSet::CanaryHeldout => "planted canaries neither saw",
        SplitSet::Inputs => "membership unknown",
        SplitSet::Reference => "reference population: f did not see them",
        SplitSet::Pool => "each seen by half of the encoders",
    }
}

/// Whether the images' membership is known for `set`: every set but `inputs`.
fn membership_known(set: SplitSet) -> bool {
    set != SplitSet::Inputs
}

/// The set whose highest scores an audit shows: `candidate` when it was audited (then they
/// are the most memorized of what `f` saw), else the first set.
pub fn grid_set(sets: &[SplitSet]) -> SplitSet {
    match sets.first() {
        Some(&first) if !sets.contains(&SplitSet::Candidate) => first,
        _ => SplitSet::Candidate,
    }
}

/// The checks that say whether `set`'s images score above their reference set: members
/// above shared and extra, candidate canaries apart from held-out ones.
fn member_checks(set: SplitSet) -> &'static [&'static str] {
    match set {
        SplitSet::Candidate => &["candidate above shared", "candidate above extra"],
        SplitSet::CanaryCandidate => &["canary-candidate separated from canary-heldout"],
        _ => &[],
    }
}

/// Whether `set`'s members were scored against a reference and its checks against that
/// reference failed: the audit then shows no memorization signal.
fn member_checks_fail(set: SplitSet, summary: &Summary) -> bool {
    let names = member_checks(set);
    summary
        .checks
        .iter()
        .any(|c| names.contains(&c.check.as_str()) && !c.pass)
}

/// Whether the highest scores of `set` may be called "most memorized": its images are known
/// to be in `f`'s training data and not in `g`'s, and the audit's checks against a reference
/// set (shared or non-members; held-out canaries for canaries) were made and passed.
pub fn scores_are_memorization(set: SplitSet, summary: &Summary) -> bool {
    let names = member_checks(set);
    let made: Vec<bool> = summary
        .checks
        .iter()
        .filter(|c| names.contains(&c.check.as_str()))
        .map(|c| c.pass)
        .collect();
    !made.is_empty() && made.iter().all(|&pass| pass)
}

/// What the audit can and cannot conclude, from the sets it has: sentences for the first
/// lines of the printed summary and of the report. Empty when members were compared with
/// non-members (then the checks and the membership evaluation speak for themselves).
pub fn scope(summary: &Summary) -> Vec<String> {
    let has = |s: SplitSet| summary.sets.contains_key(&s);
    let mut out = Vec::new();
    if !summary.sets.keys().copied().any(membership_known) {
        out.push(
            "Membership of these images is unknown: no members or non-members were named, so \
             this audit cannot conclude that any image was memorized, or that it was in f's \
             training data. A score says how much tighter f aligns the image's augmented views \
             than g does; two encoders that differ at all (even untrained ones) give scores of \
             both signs, some of them 'significantly' above zero, and correlations with \
             typicality."
                .into(),
        );
        out.push(
            "To conclude, audit images f was trained on and g was not (--members) against \
             images neither saw, from the same distribution (--non-members): the checks and \
             the membership ROC then say whether the scores tell them apart."
                .into(),
        );
        return out;
    }
    if has(SplitSet::Pool) {
        // A many-model pool: every image is a member of half the encoders, and each encoder's
        // membership test is in the many-model section.
        return out;
    }
    let members = has(SplitSet::Candidate) || has(SplitSet::CanaryCandidate);
    let non_members = has(SplitSet::Extra) || has(SplitSet::CanaryHeldout);
    if members && !non_members {
        let reference = if has(SplitSet::Shared) {
            " Members are compared with shared images only; the membership evaluation needs \
             non-members."
        } else {
            " Members' scores have no reference to be compared with: a high score alone is \
             not evidence of memorization."
        };
        out.push(format!(
            "No non-members (images neither encoder saw) were scored, so the membership \
             evaluation (ROC AUC, TPR at low FPR) is not made.{reference} Add --non-members \
             (or the split's extra set) to conclude."
        ));
    } else if !members {
        out.push(
            "No members of f alone (candidate) were scored: the audit shows how the other \
             sets score, not what f memorized."
                .into(),
        );
    }
    if member_checks_fail(SplitSet::Candidate, summary) {
        out.push(
            "The members (candidate) do not score significantly above their reference set \
             (see the checks): this audit shows no memorization signal, so its highest scores \
             are listed as scores, not as memorized images."
                .into(),
        );
    }
    out
}

/// A number of the report (its tables, the grid's tiles): 4 decimals, or 3 significant in
/// scientific notation when tiny or huge; "–" for none, and for a non-finite value (which
/// `summary.json` holds as `null`). Counts are written with `to_string`.
pub(super) fn num(x: impl Into<Option<f64>>) -> String {
    match x.into() {
        Some(x) if !x.is_finite() => "–".into(),
        Some(x) if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

/// `x` as C's `%.{sig}g` writes it (Python's `format(x, '.2g')`): `sig` significant digits,
/// scientific notation when the exponent is below -4 or at least `sig`, trailing zeros cut.
pub fn fmt_g(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let sig = sig.max(1);
    // The exponent after rounding to `sig` digits (9.96 at 2 digits is 1.0e1).
    let sci = format!("{:.*e}", sig - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= sig as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (sig as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{x:.decimals$}"))
    }
}

/// The printed summary of the finished audit in `out` (its `summary.json` and `scores.csv`).
///
/// Errors: either file is missing or unreadable (the audit is not finished).
pub fn read(out: &Path) -> Result<String> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let summary: Summary = serde_json::from_str(&text)
        .map_err(|e| Error::Param(format!("{}: {e}", path.display())))?;
    if summary.one_model.is_some() {
        return Ok(render_one_model(&summary, out));
    }
    let rows = scores::read_csv(&out.join("scores.csv"), &["set", "score"])?;
    Ok(render(&summary, &rows, out))
}

/// The printed summary of an audit whose files are in `out`: where its files are and what its
/// sets are, the mean score per set, the checks, the membership evaluation, the correlation
/// with atypicality and the highest-scoring examples.
pub fn render(s: &Summary, rows: &[ScoreRow], out: &Path) -> String {
    let mut t = String::new();
    let out = out.display().to_string();
    header(&mut t, s, &out);
    sets(&mut t, s);
    checks(&mut t, s);
    membership(&mut t, s);
    if s.params.reference.is_some() {
        estimators(&mut t, s);
    }
    many_model(&mut t, s);
    layer_mem(&mut t, s);
    typicality(&mut t, s);
    highest(&mut t, s, rows);
    if !s.failed.is_empty() {
        let n = s.failed.len();
        let _ = writeln!(
            t,
            "{n} {} could not be read or scored (listed in summary.json)",
            if n == 1 { "image" } else { "images" }
        );
    }
    let _ = writeln!(t, "report: {out}/report.html");
    t
}

/// Where the audit's files are, and what each set is.
fn header(t: &mut String, s: &Summary, out: &str) {
    let _ = writeln!(
        t,
        "audit of {} ({} view pairs per image) in {out}/:",
        s.bundle.path, s.params.pairs
    );
    t.push_str("  report.html, scores.csv, scores.jsonl, summary.json, figures/\n");
    for (set, inputs) in &s.params.sources {
        let _ = writeln!(
            t,
            "  {set} = --{} {} ({})",
            set.member_flag(),
            inputs.join(" "),
            set_meaning(*set)
        );
    }
    for line in scope(s) {
        let _ = writeln!(t, "note: {line}");
    }
}

/// The mean score of each set, and the fraction significantly above 0.
fn sets(t: &mut String, s: &Summary) {
    let legend: Vec<String> = s
        .sets
        .keys()
        .filter(|set| !set.is_canary() && **set != SplitSet::Shared)
        .map(|set| format!("{set}: {}", set_meaning(*set)))
        .collect();
    let _ = writeln!(t, "mean SSLMem score by set ({}):", legend.join("; "));
    for (set, g) in &s.sets {
        let mean = g
            .spread
            .as_ref()
            .map_or("–".into(), |sp| format!("{:+.4}", sp.mean));
        let frac = g
            .significant_positive_fraction
            .map_or("–".into(), |f| format!("{:.1}%", 100.0 * f));
        let _ = writeln!(
            t,
            "  {:<19} n={:<5} mean {mean}  significantly > 0: {frac}",
            set.name(),
            g.count
        );
    }
}

/// Each check of the expected signs, with its verdict.
fn checks(t: &mut String, s: &Summary) {
    if !s.checks.is_empty() {
        let canary = s.checks.iter().any(|c| c.check.starts_with("canary"));
        let _ = writeln!(
            t,
            "checks (expected signs of the sets{}):",
            if canary {
                "; the canary positive control"
            } else {
                ""
            }
        );
        for c in &s.checks {
            let detail = match c.value {
                CheckValue::Auc { auc, auc_ci95 } => {
                    format!("AUC {auc:.3} [{:.3}, {:.3}]", auc_ci95[0], auc_ci95[1])
                }
                CheckValue::Test {
                    t: Some(tv),
                    p: Some(p),
                } => format!("t {tv:+.2}, p {}", fmt_g(p, 2)),
                CheckValue::Test { .. } => "undefined (too few examples or no spread)".into(),
                CheckValue::NearZero {
                    mean,
                    candidate_mean,
                } => format!("mean {mean:+.4} vs candidate {candidate_mean:+.4}"),
            };
            let _ = writeln!(
                t,
                "  {}  {:<48} {detail}",
                if c.pass { "pass" } else { "FAIL" },
                c.check
            );
        }
    }
}

/// The membership evaluation: ROC AUC and TPR at 1% FPR.
fn membership(t: &mut String, s: &Summary) {
    if !s.membership.is_empty() {
        t.push_str("membership evaluation (members: seen by f; non-members: seen by neither):\n");
        for m in &s.membership {
            let at = match m.tpr_at_fpr.first() {
                Some(x) if x.reachable => format!(
                    "{:.3} (FPR {:.4}, threshold {})",
                    x.tpr.unwrap_or(f64::NAN),
                    x.fpr.unwrap_or(f64::NAN),
                    x.threshold.map_or("none".into(), |v| format!("{v:.4}"))
                ),
                Some(x) => format!("not reachable with {} non-members", x.non_members),
                None => "not computed".into(),
            };
            let _ = writeln!(
                t,
                "  {} vs {}: AUC {:.3} [{:.3}, {:.3}], TPR at FPR 1%: {at}",
                m.members, m.non_members, m.auc, m.auc_ci95[0], m.auc_ci95[1]
            );
        }
    }
}

/// A many-model audit's design, interval widths and per-encoder membership tests.
fn many_model(t: &mut String, s: &Summary) {
    let Some(m) = &s.many_model else {
        return;
    };
    let _ = writeln!(
        t,
        "many-model estimate: {} encoders, each trained on half of the pool; {} pool images scored (in-encoders as f, out-encoders as g)",
        m.models, m.scored
    );
    if let Some(w) = &m.interval_width {
        let _ = writeln!(
            t,
            "  95% interval width per image: mean {:.4}, median {:.4}",
            w.mean, w.median
        );
    }
    for e in &m.per_encoder {
        let x = &e.membership;
        let _ = writeln!(
            t,
            "  encoder f{} as a membership test (the others as reference): AUC {:.3} [{:.3}, {:.3}] ({} members, {} non-members)",
            e.encoder, x.auc, x.auc_ci95[0], x.auc_ci95[1], x.n_members, x.n_non_members
        );
    }
    if let Some(a) = m.mean_auc {
        let _ = writeln!(t, "  mean leave-one-encoder-out AUC {a:.3}");
    } else {
        t.push_str("  no leave-one-encoder-out test: it needs at least 4 encoders\n");
    }
}

/// LayerMem by layer, when the audit measured it.
fn layer_mem(t: &mut String, s: &Summary) {
    let Some(m) = &s.layer_mem else {
        return;
    };
    let _ = writeln!(
        t,
        "LayerMem (mean ratio score of the {} {} images on each layer's output, 95% interval; Δ: increase over the layer before):",
        m.images,
        m.set.name()
    );
    for r in &m.layers {
        let iv = |v: &Option<crate::stats::MeanInterval>| match v {
            Some(v) => format!("{:+.4} [{:+.4}, {:+.4}]", v.mean, v.ci95[0], v.ci95[1]),
            None => "–".into(),
        };
        let delta = match &r.delta {
            Some(_) => format!("  Δ {}", iv(&r.delta)),
            None => String::new(),
        };
        let _ = writeln!(t, "  {:<12} {}{delta}", r.layer, iv(&r.layer_mem));
    }
}

/// Every estimator's membership evaluation (how much g buys).
fn estimators(t: &mut String, s: &Summary) {
    if s.estimators.is_empty() {
        return;
    }
    t.push_str("estimators compared (higher is member-like; only sslmem is SSLMem):\n");
    for e in &s.estimators {
        let m = &e.membership;
        let tpr = |i: usize| match m.tpr_at_fpr.get(i) {
            Some(x) if x.reachable => format!("{:.3}", x.tpr.unwrap_or(f64::NAN)),
            _ => "not reachable".into(),
        };
        let _ = writeln!(
            t,
            "  {:<19} {} vs {}: AUC {:.3} [{:.3}, {:.3}], TPR at FPR 1%: {}, at 0.1%: {}",
            e.estimator.to_string(),
            m.members,
            m.non_members,
            m.auc,
            m.auc_ci95[0],
            m.auc_ci95[1],
            tpr(0),
            tpr(1)
        );
    }
}

/// The printed summary of a one-model audit: where its files are, the one-model fields by
/// set, and the estimators' membership evaluation.
pub fn render_one_model(s: &Summary, out: &Path) -> String {
    let mut t = String::new();
    let out = out.display().to_string();
    let _ = writeln!(
        t,
        "one-model audit of {} (f only, no SSLMem score; {} view pairs per image) in {out}/:",
        s.bundle.path, s.params.pairs
    );
    t.push_str("  report.html, scores.csv, scores.jsonl, summary.json, figures/\n");
    match &s.params.reference {
        Some(r) => {
            let n = s
                .one_model
                .as_ref()
                .and_then(|o| o.reference_images)
                .unwrap_or(0);
            let _ = writeln!(
                t,
                "  reference population: {r} ({n} images, k = {} neighbours)",
                s.params.knn.unwrap_or(0)
            );
        }
        None => t.push_str(
            "note: no --reference was given: align_f is uncalibrated (docs/science.md#one-model-scores)\n",
        ),
    }
    if let Some(om) = &s.one_model {
        t.push_str("mean (median) of each one-model field by set:\n");
        let cell = |x: &Option<super::summary::Spread>| {
            x.as_ref().map_or("–".into(), |x| {
                format!("{:+.4} ({:+.4})", x.mean, x.median)
            })
        };
        for (set, g) in &om.sets {
            let _ = writeln!(
                t,
                "  {:<19} n={:<5} align_f {}  align_f_percentile {}  knn_gap {}",
                set.to_string(),
                g.count,
                cell(&g.align_f),
                cell(&g.align_f_percentile),
                cell(&g.knn_gap)
            );
        }
    }
    estimators(&mut t, s);
    if !s.failed.is_empty() {
        let _ = writeln!(
            t,
            "{} images could not be read or scored (listed in summary.json)",
            s.failed.len()
        );
    }
    let _ = writeln!(t, "report: {out}/report.html");
    t
}

/// The rank correlation of score and atypicality.
fn typicality(t: &mut String, s: &Summary) {
    let candidate_caveat =
        if s.sets.contains_key(&SplitSet::Shared) || s.sets.contains_key(&SplitSet::Extra) {
            ""
        } else {
            " (without a reference set this is no evidence of memorization)"
        };
    for (set, what, caveat) in [
        (SplitSet::Candidate, "among candidates", candidate_caveat),
        (
            SplitSet::Inputs,
            "among inputs",
            " (without non-members this is no evidence of memorization)",
        ),
    ] {
        if let Some(Some(sp)) = s.typicality.get(&set) {
            let _ = writeln!(
                t,
                "Spearman(score, atypicality) {what}: rho {:+.3}, p {}{caveat}",
                sp.rho,
                fmt_g(sp.p_two_sided, 2)
            );
        }
    }
}

/// The highest-scoring examples of the set the report's grid shows.
fn highest(t: &mut String, s: &Summary, rows: &[ScoreRow]) {
    let sets: Vec<SplitSet> = s.sets.keys().copied().collect();
    let top_set = grid_set(&sets);
    let mut top: Vec<&ScoreRow> = rows
        .iter()
        .filter(|r| r.set == top_set && r.score.is_finite())
        .collect();
    top.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.rank.cmp(&b.rank)));
    if !top.is_empty() {
        if scores_are_memorization(top_set, s) {
            let _ = writeln!(t, "most memorized {top_set}s:");
        } else if membership_known(top_set) {
            let _ = writeln!(t, "highest scores ({top_set}: {}):", set_meaning(top_set));
        } else {
            t.push_str("highest scores (membership unknown: not evidence of memorization):\n");
        }
        for r in top.iter().take(TOP) {
            let class = r.label.map_or(String::new(), |l| format!("class {l}  "));
            let ci = match (r.ci95_low, r.ci95_high) {
                (Some(lo), Some(hi)) => format!("  95% CI [{lo:+.4}, {hi:+.4}]"),
                _ => String::new(),
            };
            let _ = writeln!(t, "  {:<26} {class}score {:+.4}{ci}", r.input, r.score);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_g_writes_as_c_and_python_do() {
        for (x, want) in [
            (1.1e-40, "1.1e-40"),
            (2.0e-44, "2e-44"),
            (8.6e-16, "8.6e-16"),
            (0.031, "0.031"),
            (0.03149, "0.031"),
            (0.0001234, "0.00012"),
            (0.00001234, "1.2e-05"),
            (0.5, "0.5"),
            (9.96, "10"),
            (123.0, "1.2e+02"),
            (0.0, "0"),
            (-0.0456, "-0.046"),
        ] {
            assert_eq!(fmt_g(x, 2), want, "{x}");
        }
        assert_eq!(fmt_g(f64::NAN, 2), "–");
    }
}
