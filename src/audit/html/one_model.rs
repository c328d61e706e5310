//! `report.html` of a one-model audit (the bundle has no `g`): what it cannot conclude, the
//! run record, the one-model fields by set, the estimators' membership evaluation and their
//! ROC. Every number on the page says which estimator it comes from; none is SSLMem.

use std::fmt::Write as _;

use super::record::{run_record, RunRecord};
use super::tables::{estimators_table, one_model_sets_table};
use super::{esc, figure, head, ESTIMATORS_CAPTION};
use crate::audit::summary::Summary;
use crate::audit::AuditParams;
use crate::bundle::Bundle;

/// The page of a one-model audit; `roc` is the estimators' ROC figure, if any.
pub fn one_model_html(
    bundle: &Bundle,
    params: &AuditParams,
    summary: &Summary,
    roc: Option<&[u8]>,
    run: &RunRecord,
) -> String {
    let mut h = String::new();
    head(&mut h, "One-model audit (no SSLMem score)");
    h.push_str(
        "<div class=\"scope\" id=\"scope\"><p><b>What this audit cannot conclude.</b></p>\n",
    );
    for line in limits(summary, params) {
        let _ = writeln!(h, "<p>{}</p>", esc(&line));
    }
    h.push_str("</div>\n");
    run_record(&mut h, bundle, params, run);
    let _ = writeln!(
        h,
        "<p>The bundle holds an encoder <em>f</em> and no encoder <em>g</em> trained without the images, so there is no SSLMem score. Each image gets <code>align_f</code>, the mean distance between {} pairs of its augmented views under <em>f</em> (lower: tighter, as training on an image makes it){}.</p>",
        params.pairs,
        if params.reference.is_some() {
            ", and two scores calibrated on the reference population: <code>align_f_percentile</code> (the share of reference images aligned more tightly; low is member-like) and <code>knn_gap</code> (the nearest reference images' mean <code>align_f</code> minus the image's; high is member-like). docs/science.md#one-model-scores"
        } else {
            "; with <code>--reference</code> it would also get two scores calibrated on a reference population (docs/science.md#one-model-scores)"
        }
    );
    estimators_table(&mut h, summary);
    one_model_sets_table(&mut h, summary);
    if let Some(png) = roc {
        h.push_str("<h2>Figures</h2>\n");
        figure(&mut h, "fig-roc-estimators", png, &ESTIMATORS_CAPTION);
    }
    let failed = summary.failed.len();
    let _ = writeln!(
        h,
        "<h2>Notes</h2><p>{failed} examples could not be read (listed in summary.json). Per-image values are in scores.csv and scores.jsonl.</p>"
    );
    h.push_str("</body></html>\n");
    h
}

/// What a one-model audit cannot conclude, plainly.
fn limits(summary: &Summary, params: &AuditParams) -> Vec<String> {
    let mut out = vec![
        "Without an encoder g trained without the images, a tight alignment under f can mean \
         that f memorized the image or that the image is simply easy for any encoder of its \
         kind: these numbers are membership signals of f, not SSLMem memorization scores."
            .to_string(),
    ];
    if params.reference.is_none() {
        out.push(
            "No reference population was named (--reference): align_f is uncalibrated, and \
             images that are easy to align for every encoder look like members."
                .into(),
        );
    } else {
        out.push(
            "The calibrated scores are only as good as the reference population: it must be \
             images f did not see, from the same distribution as the audited images (for \
             encoders, members against same-distribution non-members is the only fair test)."
                .into(),
        );
    }
    if summary.estimators.is_empty() {
        out.push(
            "No members and non-members were both audited, so no membership evaluation says \
             how well these signals separate them."
                .into(),
        );
    }
    out
}
