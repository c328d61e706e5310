//! The report's run record: what produced the files (program, command, bundle and file
//! hashes), with which parameters, and when.

use std::fmt::Write as _;

use super::esc;
use crate::audit::text::set_meaning;
use crate::audit::{AuditParams, SplitSet};
use crate::bundle::Bundle;

/// The report's run record beyond the audit's parameters.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// When the final files were written: seconds since 1970, UTC.
    pub date: i64,
    /// A command that runs the audit again ([`super::command_line`]).
    pub command: String,
    /// `sha256` of the bundle's manifest (`sslmem.json`: split, augmentations, encoders).
    pub manifest_sha256: String,
    /// Class names by label, where the dataset has them.
    pub classes: Vec<String>,
}

/// `secs` since 1970 as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar, as
/// `date -u` writes it).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A row of the run record: its name and its value (HTML, already escaped).
fn row(h: &mut String, k: &str, v: &str) {
    let _ = writeln!(
        h,
        "<tr><th class=\"l\">{k}</th><td class=\"l\">{v}</td></tr>"
    );
}

/// The run record: what produced these files, from what, with which parameters, and when.
pub(super) fn run_record(h: &mut String, bundle: &Bundle, params: &AuditParams, run: &RunRecord) {
    h.push_str("<h2 id=\"run-record\">Run record</h2><table class=\"record\">\n");
    provenance(h, bundle, params, run);
    parameters(h, bundle, params);
    h.push_str("</table>\n");
}

/// When, by which program and command, from which bundle and files.
fn provenance(h: &mut String, bundle: &Bundle, params: &AuditParams, run: &RunRecord) {
    let m = &bundle.manifest;
    row(h, "written", &esc(&utc(run.date)));
    row(
        h,
        "program",
        &format!(
            "sslmem {} (git revision {})",
            esc(crate::VERSION),
            esc(crate::GIT_REVISION)
        ),
    );
    row(
        h,
        "command",
        &format!(
            "<code id=\"command\">{}</code><br><small>an equivalent command: add <code>--out DIR</code>; the same audit run as shards (<code>--shard I/N</code>) and merged with <code>sslmem audit-merge</code> records the same command and writes the same files</small>",
            esc(&run.command)
        ),
    );
    row(
        h,
        "bundle",
        &format!(
            "{} <small>({})</small>",
            esc(m.name.as_deref().unwrap_or("unnamed")),
            esc(&bundle.dir.display().to_string())
        ),
    );
    row(
        h,
        "manifest",
        &format!(
            "{} <small>sha256 {}</small>",
            esc(crate::bundle::MANIFEST),
            esc(&run.manifest_sha256)
        ),
    );
    let files = |v: &[crate::bundle::ModelFile]| {
        v.iter()
            .map(|f| format!("{} <small>sha256 {}</small>", esc(&f.path), esc(&f.sha256)))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    if m.g.is_empty() {
        row(h, "f (the encoder audited)", &files(&m.f));
        row(
            h,
            "g",
            "none: a one-model bundle, so no SSLMem score (docs/science.md#one-model-scores)",
        );
    } else if params.inputs.is_empty() {
        row(h, "f (trained with the audited data)", &files(&m.f));
        row(h, "g (trained without it)", &files(&m.g));
    } else {
        // An audit of inputs does not know what either encoder saw.
        row(h, "f (the encoder audited)", &files(&m.f));
        row(h, "g (the reference encoder)", &files(&m.g));
    }
}

/// What was audited and how: dataset, sets, examples, estimator, split, augmentations.
fn parameters(h: &mut String, bundle: &Bundle, params: &AuditParams) {
    let m = &bundle.manifest;
    row(
        h,
        "dataset",
        &esc(params.dataset.as_deref().unwrap_or("(inputs)")),
    );
    let sets = sets_text(params);
    row(h, "sets", &esc(&sets).replace('\n', "<br>"));
    row(
        h,
        "examples",
        &format!(
            "{} ({} per set)",
            params.items,
            params
                .limit
                .map_or("no limit".into(), |l| format!("at most {l}"))
        ),
    );
    row(
        h,
        "estimator",
        &format!(
            "{} view pairs per example, seed {}, mode {}, distance {}, normalisation {}",
            params.pairs,
            params.seed,
            esc(&params.mode),
            esc(&params.distance),
            esc(&params.normalize)
        ),
    );
    if let Some(r) = &params.reference {
        row(
            h,
            "reference population",
            &format!(
                "{} (--reference {}); k = {} neighbours for knn_gap",
                esc(&r.to_string()),
                esc(&r.words().join(" ")),
                params.knn.map_or("–".into(), |k| k.to_string())
            ),
        );
    }
    // The bundle's own split, when it is what was audited (not beside sets the user named).
    if let Some(split) = m
        .split
        .as_ref()
        .filter(|_| params.sources.is_empty() && params.inputs.is_empty())
    {
        row(
            h,
            "split",
            &format!(
                "{}: shared {}, candidate {}, independent {}; extra {} from {} (split seed {})",
                esc(&split.dataset),
                split.shared.len(),
                split.candidate.len(),
                split.independent.len(),
                split.extra.len(),
                esc(&split.extra_dataset),
                split.spec.seed
            ),
        );
    }
    let aug = m
        .augment
        .as_ref()
        .map(|a| serde_json::to_string_pretty(a).unwrap_or_default())
        .unwrap_or_else(|| "none recorded (SimCLR's defaults)".into());
    row(
        h,
        "augmentations",
        &format!(
            "<details><summary>training augmentations</summary><pre>{}</pre></details>",
            esc(&aug)
        ),
    );
}

/// The sets audited, as the run record names them: each named set with its inputs (one per
/// line), else the split's sets, else `inputs`.
fn sets_text(params: &AuditParams) -> String {
    if !params.sources.is_empty() {
        let named: Vec<String> = params
            .sources
            .iter()
            .map(|(set, inputs)| {
                format!(
                    "{set} ({}): --{} {}",
                    set_meaning(*set),
                    set.member_flag(),
                    inputs.join(" ")
                )
            })
            .collect();
        named.join("\n")
    } else if params.sets.is_empty() {
        SplitSet::Inputs.name().to_string()
    } else {
        let names: Vec<&str> = params.sets.iter().map(|s| s.name()).collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        // As `date -u -d @SECS '+%F %T'` writes them.
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }
}
