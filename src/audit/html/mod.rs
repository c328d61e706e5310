//! `report.html`: one self-contained page (figures embedded as PNG) that an auditor can
//! send. It opens with what the audit cannot conclude and a run record (`record`: program
//! version and git revision, an equivalent command, the bundle's name and file hashes, the
//! parameters, the date), then the tables (`tables`) and the figures, each with a caption
//! saying what it shows and how to read it.
//!
//! The only thing in the page that depends on the clock is the run record's date, which the
//! caller passes in (the command line takes `SOURCE_DATE_EPOCH` when set), so a resumed or
//! merged audit writes the same bytes as an uninterrupted one given the same date.

mod one_model;
mod record;
mod tables;

use std::fmt::Write as _;

use base64::Engine;

use super::figures::{encode_png, to_rgb, Figures, GRID_PER_END};
use super::summary::Summary;
use super::text::scope;
use super::typicality::TYPICALITY_K;
use super::{AuditParams, Record, SplitSet};
use crate::bundle::Bundle;
use crate::error::Result;
use crate::pixels::SourceImage;
use record::run_record;
use tables::{
    checks_table, class_table, estimators_table, many_model_table, membership_table, sets_table,
    tests_table,
};

pub use one_model::one_model_html;

pub use record::RunRecord;

/// `report.html`: the run record, the tables of `summary`, and the figures, each with a
/// caption that says what it shows and how to read it.
pub fn html(
    bundle: &Bundle,
    params: &AuditParams,
    summary: &Summary,
    records: &[Record],
    figs: &Figures,
    run: &RunRecord,
) -> Result<String> {
    let mut h = String::new();
    head(&mut h, "SSLMem audit");
    // What cannot be concluded comes before anything that could be read as a finding.
    let limits = scope(summary);
    if !limits.is_empty() {
        h.push_str(
            "<div class=\"scope\" id=\"scope\"><p><b>What this audit cannot conclude.</b></p>\n",
        );
        for line in &limits {
            let _ = writeln!(h, "<p>{}</p>", esc(line));
        }
        h.push_str("</div>\n");
    }
    run_record(&mut h, bundle, params, run);
    if params.inputs.is_empty() {
        let _ = writeln!(
            h,
            "<p>Memorization score of each example: <code>score = align_g − align_f</code>, the mean distance between paired augmented views under the encoder trained without the example minus under the one trained with it (docs/science.md#the-estimator); {} view pairs per example. Above zero: <em>f</em> maps the example's views closer together than <em>g</em> does, as it does for what it memorized.</p>",
            params.pairs
        );
    } else {
        let _ = writeln!(
            h,
            "<p>Score of each image: <code>score = align_g − align_f</code>, the mean distance between paired augmented views under <em>g</em> minus under <em>f</em> (docs/science.md#the-estimator); {} view pairs per image. Above zero: <em>f</em> maps the image's views closer together than <em>g</em> does.</p>",
            params.pairs
        );
    }

    checks_table(&mut h, summary);
    sets_table(&mut h, summary);
    class_table(&mut h, summary, &run.classes);
    tests_table(&mut h, summary);
    membership_table(&mut h, summary);
    estimators_table(&mut h, summary);
    many_model_table(&mut h, summary);

    let sets: Vec<SplitSet> = summary.sets.keys().copied().collect();
    h.push_str("<h2>Figures</h2>\n");
    figure(
        &mut h,
        "fig-histogram",
        &figs.histogram,
        &Caption {
            file: "figures/score-histogram.png",
            shows: "the distribution of the score in each audited set, as a density over bins common to all sets (n per set in the legend); the grey vertical line is a score of zero. Scores far outside the bulk of all scores, if any, are not binned: a grey panel beside the axis counts them per set.",
            read: &histogram_reading(&sets),
        },
    );
    if let Some(roc) = &figs.roc {
        figure(
            &mut h,
            "fig-roc",
            roc,
            &Caption {
                file: "figures/roc.png",
                shows: "the ROC curve of the score used as a membership test, on log-log axes: for every threshold, the share of members (examples f was trained on) scoring at or above it against the share of non-members that do; the grey diagonal is guessing. A rate of zero is drawn at the axis edge.",
                read: "the further a curve lies above the diagonal at low false-positive rates (the left), the more the score gives training membership away; the AUC in the legend summarises the whole curve (0.5: no information, 1: perfect).",
            },
        );
    }
    if let Some(roc) = &figs.roc_estimators {
        figure(&mut h, "fig-roc-estimators", roc, &ESTIMATORS_CAPTION);
    }
    figure(
        &mut h,
        "fig-typicality",
        &figs.typicality,
        &Caption {
            file: "figures/score-vs-typicality.png",
            shows: &format!("one point per example: its typicality (x: mean distance to its {TYPICALITY_K} nearest same-class neighbours in g's representation; higher is more atypical) against its score (y), one colour per set."),
            read: &typicality_reading(&sets),
        },
    );
    grid_section(&mut h, figs, records, &run.classes)?;
    if let (Some(m), Some(png)) = (&summary.layer_mem, &figs.layer_mem) {
        layer_mem_section(&mut h, m, png);
    }
    let failed = summary.failed.len();
    let _ = writeln!(
        h,
        "<h2>Notes</h2><p>{} examples scored; {failed} could not be read (listed in summary.json). Typicality uses the first g encoder's representation of the un-augmented image and the audited examples of the same class as neighbours (k = {TYPICALITY_K}).</p>",
        records.iter().filter(|r| r.score.is_some()).count(),
    );
    h.push_str("</body></html>\n");
    Ok(h)
}

/// LayerMem by layer: a table (LayerMem and ΔLayerMem with their intervals) and its figure.
fn layer_mem_section(h: &mut String, m: &super::layer_mem::LayerMem, png: &[u8]) {
    let _ = writeln!(
        h,
        "<h2>Where memorization builds up: LayerMem by layer ({} set)</h2>",
        esc(m.set.name())
    );
    let _ = writeln!(
        h,
        "<p>Each of the {} {} images scored again on the outputs of every layer of f and g (a feature map flattened per image), with the audit's views; LayerMem is the mean ratio score <code>(align_g − align_f) / (align_g + align_f)</code> on that layer, ΔLayerMem its increase over the layer before, paired over the same images (Wang et al. 2024). The paper finds it rising with depth (ResNet-9, SimCLR, CIFAR-10: 0.091 after the first layer, 0.308 after the last).</p>",
        m.images,
        esc(m.set.name())
    );
    let _ = writeln!(
        h,
        "<table><tr><th class=\"l\">layer</th><th>LayerMem</th><th>95% interval</th><th>ΔLayerMem</th><th>95% interval</th></tr>"
    );
    let iv = |v: Option<crate::stats::MeanInterval>| match v {
        Some(v) => (
            format!("{:.4}", v.mean),
            format!("[{:.4}, {:.4}]", v.ci95[0], v.ci95[1]),
        ),
        None => ("–".into(), "–".into()),
    };
    for r in &m.layers {
        let ((lm, lm_ci), (d, d_ci)) = (iv(r.layer_mem), iv(r.delta));
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{lm}</td><td>{lm_ci}</td><td>{d}</td><td>{d_ci}</td></tr>",
            esc(&r.layer)
        );
    }
    h.push_str("</table>\n");
    figure(
        h,
        "fig-layer-mem",
        png,
        &Caption {
            file: "figures/layer-mem.png",
            shows: "LayerMem of each layer (a point, with its 95% interval over the images as a bar), the input side on the left and the bundle's scored output last; the grey line is zero.",
            read: "a curve that rises to the right says memorization builds up with depth, as the paper finds; a step marks the layer where it grows most (its ΔLayerMem in the table). Values are ratios of alignments on different outputs, so compare their trend, not their level with the audit's score.",
        },
    );
}

/// The page's head and style, and its title as the first heading.
pub(super) fn head(h: &mut String, title: &str) {
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>");
    h.push_str(&esc(title));
    h.push_str("</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}\ntable{border-collapse:collapse;margin:0.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}\n.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}\nfigure{margin:1em 0 2em}figcaption{font-size:90%;color:#444;max-width:900px}figcaption .file{color:#777}img.fig{max-width:100%;border:1px solid #ddd}\n.scope{border-left:4px solid #c77700;background:#fff8e6;padding:4px 12px;margin:1em 0}\n.record th{width:16em;vertical-align:top}.record code{white-space:pre-wrap;word-break:break-all}\n.grid td{border:none;padding:2px;text-align:center;font-size:11px}.grid th{font-weight:600}.grid img{image-rendering:pixelated;width:56px;height:56px}\ncode,pre{background:#f6f6f6;padding:1px 4px}pre{padding:8px;overflow-x:auto;font-size:12px}\n</style></head><body>\n");
    let _ = writeln!(h, "<h1>{}</h1>", esc(title));
}

/// The caption of the estimators' ROC figure (both kinds of report).
pub(super) const ESTIMATORS_CAPTION: Caption = Caption {
    file: "figures/roc-estimators.png",
    shows: "for each pair of member and non-member sets (a panel each), the ROC curve of every estimator the audit could compute, on log-log axes: sslmem (needs g), align-f (f alone, uncalibrated), and with a reference population align-f-percentile and knn-gap; the grey diagonal is guessing.",
    read: "the gap between the sslmem curve and the best one-model curve is what the second encoder buys at each false-positive rate; where a one-model curve reaches sslmem's, an audit of f alone with that calibration loses little.",
};

/// How to read the score histogram, for the sets audited.
fn histogram_reading(sets: &[SplitSet]) -> String {
    let has = |s| sets.contains(&s);
    let mut r = String::from("zero means f and g treat an example alike.");
    if has(SplitSet::Candidate) {
        let refs: Vec<&str> = [
            (SplitSet::Shared, "shared (seen by both)"),
            (SplitSet::Extra, "extra (seen by neither)"),
        ]
        .into_iter()
        .filter(|(s, _)| has(*s))
        .map(|(_, w)| w)
        .collect();
        if refs.is_empty() {
            r.push_str(" The candidate curve (seen by f only) has no curve of unseen or shared examples to be compared with here: its position alone does not show memorization.");
        } else {
            let _ = write!(
                r,
                " Memorization shows as the candidate curve (seen by f only) lying to the right of {}, which should sit around zero.",
                refs.join(" and ")
            );
        }
    }
    if has(SplitSet::Independent) {
        r.push_str(" The independent curve (seen by g only) lies to the left, mirroring the candidate one.");
    }
    if has(SplitSet::CanaryCandidate) && has(SplitSet::CanaryHeldout) {
        r.push_str(" Canary sets: the candidate canaries (seen by f) far to the right of the held-out ones.");
    }
    if has(SplitSet::Inputs) {
        r.push_str(" Membership of the inputs is unknown, so no curve here marks memorization: the spread shows how differently f and g treat these images, not what f memorized.");
    }
    r
}

/// How to read score against typicality, for the sets audited.
fn typicality_reading(sets: &[SplitSet]) -> String {
    let mut r = if sets.contains(&SplitSet::Candidate) {
        let others = sets
            .iter()
            .any(|s| *s != SplitSet::Candidate && !s.is_canary());
        if others {
            String::from("if memorization concentrates on atypical examples, the candidate points rise to the right while the other sets stay flat;")
        } else {
            String::from("if memorization concentrates on atypical examples, the candidate points rise to the right (with no other set audited, there is no flat reference to compare with);")
        }
    } else if sets.contains(&SplitSet::Inputs) {
        String::from("membership of the inputs is unknown, so a trend here is no evidence of memorization: atypical images can score higher under any two encoders that differ;")
    } else {
        String::from("the sets audited here were seen by both or neither encoder, or by g only: a rising trend in them is not memorization by f;")
    };
    r.push_str(" Spearman's ρ per set is in the table of scores by set.");
    r
}

/// The most and least memorized (or highest and lowest scoring) examples per class: the
/// figure, then the same examples as a table with their names.
fn grid_section(
    h: &mut String,
    figs: &Figures,
    records: &[Record],
    classes: &[String],
) -> Result<()> {
    let set = figs.grid_set;
    let memorized = figs.grid_memorized;
    let (title, top, bottom) = if memorized {
        (
            "Most and least memorized",
            "most memorized",
            "least memorized",
        )
    } else {
        (
            "Highest and lowest scores",
            "highest scores",
            "lowest scores",
        )
    };
    let _ = writeln!(h, "<h2>{title}, by class ({} set)</h2>", esc(set.name()));
    let read = if memorized {
        "the left half is what f memorized most, the right half what it memorized least; compare the two halves of a row for what sets the memorized examples apart (SSLMem finds them mostly atypical)."
    } else if set == SplitSet::Candidate {
        "the left half holds the members f aligns most tightly compared with g, the right half the least; without members scoring significantly above a reference set (the checks), neither half shows what f memorized."
    } else {
        "the left half holds the images f aligns most tightly compared with g, the right half the least; their membership in f's training data is not known here, so neither half shows what f memorized."
    };
    figure(
        h,
        "fig-grid",
        &figs.grid,
        &Caption {
            file: "figures/memorized-grid.png",
            shows: &format!("for each class of the {} set (a row each), up to {GRID_PER_END} of its highest-scoring examples (left half, highest first) and as many of its lowest-scoring ones (right half, lowest first); under each tile, its class and score.", set.name()),
            read: &format!("{read} A class with fewer than twice as many scored examples shows fewer tiles, and with one the same example on both sides. The table below shows the same examples with their input names (hover over a thumbnail)."),
        },
    );
    let _ = writeln!(
        h,
        "<table class=\"grid\"><tr><th class=\"l\">class</th><th colspan=\"{GRID_PER_END}\">{top} (highest score first)</th><th></th><th colspan=\"{GRID_PER_END}\">{bottom} (lowest score first)</th></tr>"
    );
    for g in &figs.grids {
        let _ = write!(
            h,
            "<tr><th class=\"l\">{}</th>",
            esc(&class_name(g.label, classes))
        );
        let cell = |h: &mut String, (k, im, s): &(usize, SourceImage, f64)| -> Result<()> {
            let png = encode_png(&to_rgb(im, 1))?;
            let _ = write!(
                h,
                "<td><img alt=\"{}\" title=\"{}\" src=\"data:image/png;base64,{}\"><br>{s:.4}</td>",
                esc(&records[*k].input),
                esc(&records[*k].input),
                b64(&png)
            );
            Ok(())
        };
        // Each half padded to its full width, so that the halves line up under their headers.
        let empty = |h: &mut String, n: usize| {
            h.push_str(&"<td></td>".repeat(GRID_PER_END.saturating_sub(n)))
        };
        for c in &g.top {
            cell(h, c)?;
        }
        empty(h, g.top.len());
        h.push_str("<td style=\"width:24px\"></td>");
        for c in &g.bottom {
            cell(h, c)?;
        }
        empty(h, g.bottom.len());
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    Ok(())
}

/// A figure of the page: its file, what it shows and how to read it.
pub(super) struct Caption<'a> {
    file: &'a str,
    shows: &'a str,
    read: &'a str,
}

pub(super) fn figure(h: &mut String, id: &str, png: &[u8], c: &Caption) {
    let _ = writeln!(
        h,
        "<figure id=\"{id}\"><img class=\"fig\" alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption><b>What it shows.</b> {} <b>How to read it.</b> {} <span class=\"file\">({})</span></figcaption></figure>",
        esc(c.shows),
        b64(png),
        esc(c.shows),
        esc(c.read),
        esc(c.file)
    );
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn b64(png: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(png)
}

/// A class as the report names it: `3 Dress` where the dataset has names, else `class 3`;
/// `unlabelled` without a label.
fn class_name(label: Option<u8>, classes: &[String]) -> String {
    match label {
        Some(l) => match classes.get(usize::from(l)) {
            Some(name) => format!("{l} {name}"),
            None => format!("class {l}"),
        },
        None => "unlabelled".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_named_where_the_dataset_has_names() {
        let names = vec!["T-shirt/top".to_string(), "Trouser".to_string()];
        assert_eq!(class_name(Some(1), &names), "1 Trouser");
        assert_eq!(class_name(Some(7), &names), "class 7");
        assert_eq!(class_name(None, &names), "unlabelled");
    }
}
