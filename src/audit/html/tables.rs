//! The report's tables, each written from `summary.json`'s record ([`Summary`]): the
//! expected-sign checks, scores by set, by class, the tests against the reference set, and
//! the membership evaluation. A table with nothing to show is left out.

use std::fmt::Write as _;

use super::{class_name, esc};
use crate::audit::summary::{CheckValue, Group, Spread, Summary};
use crate::audit::text::num;
use crate::membership::Membership;
use crate::stats::PValues;

/// A column of the per-set table: its name, and how a set's cell is written.
type Column = (&'static str, fn(&Group) -> String);

/// The expected-sign checks and the canary check; nothing when none applies to the sets.
pub(super) fn checks_table(h: &mut String, summary: &Summary) {
    if summary.checks.is_empty() {
        return;
    }
    h.push_str("<h2>Expected signs (docs/science.md#expected-signs)</h2><table><tr><th class=\"l\">check</th><th class=\"l\">rule</th><th>value</th><th>result</th></tr>\n");
    for c in &summary.checks {
        let pass = c.pass;
        let value = match c.value {
            CheckValue::Auc { auc, auc_ci95 } => {
                format!(
                    "AUC {} [{}, {}]",
                    num(auc),
                    num(auc_ci95[0]),
                    num(auc_ci95[1])
                )
            }
            CheckValue::NearZero { mean, .. } => format!("mean {}", num(mean)),
            CheckValue::Test { t, p: Some(p) } => format!("t {}, p {}", num(t), num(p)),
            // A test that could not be computed: no figures (written so since the first
            // report, which told the kinds apart by the keys present).
            CheckValue::Test { p: None, .. } => format!("mean {}", num(None)),
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&c.check),
            esc(&c.rule),
            value,
            if pass { "pass" } else { "fail" },
            if pass { "pass" } else { "fail" }
        );
    }
    h.push_str("</table>\n");
}

/// Per-set statistics, with the rank correlation of score and typicality.
pub(super) fn sets_table(h: &mut String, summary: &Summary) {
    // Per-set statistics.
    fn spread(g: &Group, f: fn(&Spread) -> Option<f64>) -> String {
        num(g.spread.as_ref().and_then(f))
    }
    let cols: [Column; 8] = [
        ("count", |g| g.count.to_string()),
        ("mean", |g| spread(g, |s| Some(s.mean))),
        ("sd", |g| spread(g, |s| s.sd)),
        ("q05", |g| spread(g, |s| Some(s.q05))),
        ("median", |g| spread(g, |s| Some(s.median))),
        ("q95", |g| spread(g, |s| Some(s.q95))),
        ("significant_positive_fraction", |g| {
            num(g.significant_positive_fraction)
        }),
        ("score_ratio_mean", |g| num(g.score_ratio_mean)),
    ];
    h.push_str("<h2>Scores by set</h2><table><tr><th class=\"l\">set</th>");
    for (c, _) in cols {
        let _ = write!(h, "<th>{}</th>", esc(&c.replace('_', " ")));
    }
    h.push_str("<th>Spearman(score, typicality)</th></tr>\n");
    for (set, g) in &summary.sets {
        let _ = write!(h, "<tr><td class=\"l\">{}</td>", esc(set.name()));
        for (_, value) in cols {
            let _ = write!(h, "<td>{}</td>", value(g));
        }
        let _ = writeln!(
            h,
            "<td>{}</td></tr>",
            match summary.typicality.get(set).copied().flatten() {
                None => "–".into(),
                Some(sp) => format!("ρ {} (p {})", num(sp.rho), num(sp.p_two_sided)),
            }
        );
    }
    h.push_str("</table>\n<p><small>significant positive fraction: share of examples whose 95% interval over view pairs lies above zero.</small></p>\n");
}

/// Each set against its reference set; nothing when no pair of them was audited.
pub(super) fn tests_table(h: &mut String, summary: &Summary) {
    if summary.tests.is_empty() {
        return;
    }
    h.push_str("<h2>Tests against the reference set</h2><table><tr><th class=\"l\">set</th><th class=\"l\">against</th><th>mean difference</th><th>Student t (p two-sided / greater / less)</th><th>Welch t (df; p two-sided / greater / less)</th><th>Mann–Whitney U (p two-sided / greater / less)</th></tr>\n");
    for t in &summary.tests {
        let p3 = |p: Option<PValues>| {
            format!(
                "{} / {} / {}",
                num(p.map(|p| p.two_sided)),
                num(p.map(|p| p.greater)),
                num(p.map(|p| p.less))
            )
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{} ({})</td><td>{} ({}; {})</td><td>{} ({})</td></tr>",
            esc(t.a.name()),
            esc(t.b.name()),
            num(t.mean_difference),
            num(t.student.map(|x| x.t)),
            p3(t.student.map(|x| x.p)),
            num(t.welch.map(|x| x.t)),
            num(t.welch.map(|x| x.df)),
            p3(t.welch.map(|x| x.p)),
            num(t.mann_whitney.map(|x| x.u)),
            p3(t.mann_whitney.map(|x| x.p)),
        );
    }
    h.push_str("</table>\n");
}

/// Per class and set: examples, mean score, share significantly above zero.
pub(super) fn class_table(h: &mut String, summary: &Summary, classes: &[String]) {
    if summary.classes.is_empty() {
        return;
    }
    let mut labels: Vec<u8> = summary
        .classes
        .values()
        .flat_map(|c| c.keys().copied())
        .collect();
    labels.sort_unstable();
    labels.dedup();
    h.push_str("<h2>Scores by class</h2>\n<p>For each class and set: the examples scored (n), their mean score, and the share whose 95% interval over view pairs lies above zero (% significant). Memorization shows as candidate classes with a higher mean and share than the same class in shared; a class far above the others is one <em>f</em> memorized more of.</p>\n<table id=\"class-table\"><tr><th class=\"l\" rowspan=\"2\">class</th>");
    for set in summary.classes.keys() {
        let _ = write!(h, "<th colspan=\"3\">{}</th>", esc(set.name()));
    }
    h.push_str("</tr>\n<tr>");
    for _ in summary.classes.keys() {
        h.push_str("<th>n</th><th>mean</th><th>% significant</th>");
    }
    h.push_str("</tr>\n");
    for l in labels {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td>",
            esc(&class_name(Some(l), classes))
        );
        for by_label in summary.classes.values() {
            match by_label.get(&l) {
                Some(g) => {
                    let _ = write!(
                        h,
                        "<td>{}</td><td>{}</td><td>{}</td>",
                        g.count,
                        num(g.spread.as_ref().map(|s| s.mean)),
                        g.significant_positive_fraction
                            .map_or("–".into(), |f| format!("{:.1}", 100.0 * f))
                    );
                }
                None => h.push_str("<td>0</td><td>–</td><td>–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// The membership table: AUC with its bootstrap interval, TPR at low FPR with the threshold.
pub(super) fn membership_table(h: &mut String, summary: &Summary) {
    let rows = &summary.membership;
    if rows.is_empty() {
        return;
    }
    h.push_str("<h2>Membership evaluation</h2>\n<p>How well the score tells examples an encoder <em>f</em> was trained on (members) from examples neither encoder saw: ROC AUC with a 95% bootstrap interval, and the true-positive rate at a fixed low false-positive rate, with the score threshold that achieves it.</p>\n<table><tr><th class=\"l\">members</th><th class=\"l\">non-members</th><th>n</th><th>AUC [95% CI]</th><th>TPR at FPR 1% (FPR achieved, threshold)</th><th>TPR at FPR 0.1% (FPR achieved, threshold)</th></tr>\n");
    for m in rows {
        let at = |i: usize| match m.tpr_at_fpr.get(i) {
            Some(t) if t.reachable => {
                format!("{} ({}, {})", num(t.tpr), num(t.fpr), num(t.threshold))
            }
            Some(t) => format!("not reachable with {} non-members", t.non_members),
            None => "not reachable with – non-members".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{} / {}</td><td>{} [{}, {}]</td><td>{}</td><td>{}</td></tr>",
            esc(m.members.name()),
            esc(m.non_members.name()),
            m.n_members,
            m.n_non_members,
            num(m.auc),
            num(m.auc_ci95[0]),
            num(m.auc_ci95[1]),
            at(0),
            at(1)
        );
    }
    h.push_str("</table>\n");
}

/// Every estimator's membership evaluation side by side (how much the second encoder buys);
/// nothing when there is none.
pub(super) fn estimators_table(h: &mut String, summary: &Summary) {
    let rows = &summary.estimators;
    if rows.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"estimators\">Estimators compared: how much g buys</h2>\n<p>The same membership evaluation made with each estimator this audit could compute, each oriented so that higher means member-like: <b>sslmem</b>, the two-model score <code>align_g − align_f</code> (needs g); <b>align-f</b>, f's alignment alone, negated (no calibration); <b>align-f-percentile</b>, 1 − the percentile of <code>align_f</code> among the reference population's; <b>knn-gap</b>, the mean <code>align_f</code> of the nearest reference images in f's representation minus the image's (docs/science.md#one-model-scores). Only sslmem is an SSLMem score.</p>\n<table><tr><th class=\"l\">estimator</th><th class=\"l\">needs</th><th class=\"l\">members</th><th class=\"l\">non-members</th><th>n</th><th>AUC [95% CI]</th><th>TPR at FPR 1%</th><th>TPR at FPR 0.1%</th></tr>\n");
    for e in rows {
        let m = &e.membership;
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{} / {}</td><td>{} [{}, {}]</td><td>{}</td><td>{}</td></tr>",
            esc(&e.estimator.to_string()),
            esc(e.estimator.needs()),
            esc(m.members.name()),
            esc(m.non_members.name()),
            m.n_members,
            m.n_non_members,
            num(m.auc),
            num(m.auc_ci95[0]),
            num(m.auc_ci95[1]),
            tpr_cell(m, 0),
            tpr_cell(m, 1)
        );
    }
    h.push_str("</table>\n");
}

/// The true-positive rate of `m` at its `i`-th low false-positive rate, or why there is none.
fn tpr_cell(m: &Membership, i: usize) -> String {
    match m.tpr_at_fpr.get(i) {
        Some(t) if t.reachable => num(t.tpr),
        Some(t) => format!("not reachable with {} non-members", t.non_members),
        None => "–".into(),
    }
}

/// A many-model audit's design and per-encoder membership tests.
pub(super) fn many_model_table(h: &mut String, summary: &Summary) {
    let Some(m) = &summary.many_model else {
        return;
    };
    let _ = writeln!(
        h,
        "<h2 id=\"many-model\">Many-model estimate</h2><p>{} encoders, each trained on half of the pool (complementary pairs of random halves); each of the {} pool images is scored by its mean alignment under the encoders that did not train on it minus under those that did (docs/science.md#the-many-model-estimator). 95% interval width per image: {}. Each encoder is then a membership test of its own training half, the other encoders that left an image out serving as its reference:</p>",
        m.models,
        m.scored,
        m.interval_width
            .as_ref()
            .map_or("–".into(), |w| format!("mean {}, median {}", num(w.mean), num(w.median)))
    );
    if m.per_encoder.is_empty() {
        h.push_str("<p>No leave-one-encoder-out test: with 2 encoders an image one did not see was seen by the only other one.</p>\n");
        return;
    }
    h.push_str("<table><tr><th class=\"l\">encoder</th><th>members / non-members</th><th>AUC [95% CI]</th><th>TPR at FPR 1%</th></tr>\n");
    for e in &m.per_encoder {
        let x = &e.membership;
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">f{}</td><td>{} / {}</td><td>{} [{}, {}]</td><td>{}</td></tr>",
            e.encoder,
            x.n_members,
            x.n_non_members,
            num(x.auc),
            num(x.auc_ci95[0]),
            num(x.auc_ci95[1]),
            tpr_cell(x, 0)
        );
    }
    h.push_str("</table>\n");
}

/// A one-model audit's per-set statistics of its fields (mean and median of each).
pub(super) fn one_model_sets_table(h: &mut String, summary: &Summary) {
    let Some(om) = &summary.one_model else {
        return;
    };
    h.push_str("<h2>One-model fields by set</h2><table><tr><th class=\"l\">set</th><th>n</th><th>align_f mean (median)</th><th>align_f_percentile mean (median)</th><th>knn_gap mean (median)</th></tr>\n");
    let cell = |s: &Option<Spread>| match s {
        Some(s) => format!("{} ({})", num(s.mean), num(s.median)),
        None => "–".into(),
    };
    for (set, g) in &om.sets {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(set.name()),
            g.count,
            cell(&g.align_f),
            cell(&g.align_f_percentile),
            cell(&g.knn_gap)
        );
    }
    h.push_str("</table>\n");
}
