//! The audit's pictures and `report.html`: one self-contained page (figures embedded as PNG)
//! that an auditor can send, and the same figures as PNG files in `figures/`.
//!
//! - typicality of each example: mean distance to its nearest neighbours of the same class in
//!   `g`'s representation (un-augmented images, l2-normalised), among the audited examples;
//! - histograms of the score per set; score against typicality; for each class, the most and
//!   the least memorized examples with their scores.
//!
//! The page opens with a run record (program version and git revision, an equivalent command,
//! the bundle's name and file hashes, the parameters, the date) and gives every figure a
//! caption saying what it shows and how to read it.
//!
//! Plots are drawn with `plotters` (bitmap backend, the embedded DejaVu Sans font); the only
//! thing in the page that depends on the clock is the run record's date, which the caller
//! passes in (the command line takes `SOURCE_DATE_EPOCH` when set), so a resumed or merged
//! audit writes the same bytes as an uninterrupted one given the same date.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::sync::OnceLock;

use base64::Engine;
use ndarray::Array2;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rayon::prelude::*;

use super::summary::{CheckValue, Group, Spread, Summary};
use super::text::{scope, set_meaning};
use super::{AuditParams, Item, Record, SplitSet};
use crate::bundle::Bundle;
use crate::engine::{self, Preprocess};
use crate::error::{Error, Result};
use crate::membership::Membership;
use crate::pixels::SourceImage;
use crate::stats::PValues;

/// Neighbours averaged for the typicality measure.
pub const TYPICALITY_K: usize = 10;
/// Examples shown per class and end (most / least memorized).
const GRID_PER_END: usize = 8;
const FONT: &[u8] = include_bytes!("../../vendor/fonts/DejaVuSans.ttf");

fn font_ready() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::output(
            "a figure",
            "the embedded font could not be loaded",
        ))
    }
}

fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::output("a figure", e)
}

/// `g0`'s representations of the examples' un-augmented images (rows l2-normalised), through
/// the engine (an image that is not the model's size is resized, as `embed` does); `None`
/// for examples that could not be read.
fn representations(engine: &engine::Engine, items: &[Item]) -> Result<Vec<Option<Vec<f32>>>> {
    let channels = engine.input().channels;
    if engine.bundle().g.is_empty() {
        return Ok(vec![None; items.len()]);
    }
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(512) {
        let imgs: Vec<Option<SourceImage>> = chunk
            .par_iter()
            .map(|it| it.input.load(channels, Default::default()).ok())
            .collect();
        let ok: Vec<SourceImage> = imgs.iter().flatten().cloned().collect();
        // A row that is not finite (already recorded as a failed score) has no typicality.
        let reps = engine.embed_unchecked(&ok, Preprocess::Resize)?;
        let empty = Array2::zeros((0, 0));
        let g = reps.g.first().unwrap_or(&empty);
        let mut rows = g.rows().into_iter();
        for im in &imgs {
            out.push(im.as_ref().and_then(|_| {
                let r = rows.next()?;
                if r.iter().any(|v| !v.is_finite()) {
                    return None;
                }
                let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                Some(r.iter().map(|v| v / n).collect())
            }));
        }
    }
    Ok(out)
}

/// Typicality of every record: mean l2 distance to its `TYPICALITY_K` nearest neighbours of
/// the same label (all audited, scored examples; unlabelled ones form one group).
pub(super) fn typicality(
    engine: &engine::Engine,
    items: &[Item],
    records: &[Record],
) -> Result<Vec<Option<f64>>> {
    let reps = representations(engine, items)?;
    let mut groups: BTreeMap<Option<u8>, Vec<usize>> = BTreeMap::new();
    for (k, r) in records.iter().enumerate() {
        if r.score.is_some() && reps[k].is_some() {
            groups.entry(r.label).or_default().push(k);
        }
    }
    let mut out = vec![None; records.len()];
    for members in groups.values() {
        if members.len() < 2 {
            continue;
        }
        let k = TYPICALITY_K.min(members.len() - 1);
        let vals: Vec<(usize, f64)> = members
            .par_iter()
            .map(|&a| {
                let ra = reps[a].as_deref().unwrap_or_default();
                let mut d: Vec<f64> = members
                    .iter()
                    .filter(|&&b| b != a)
                    .map(|&b| {
                        let rb = reps[b].as_deref().unwrap_or_default();
                        let s: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
                        f64::from(s).sqrt()
                    })
                    .collect();
                d.select_nth_unstable_by(k - 1, f64::total_cmp);
                (a, d[..k].iter().sum::<f64>() / k as f64)
            })
            .collect();
        for (a, v) in vals {
            out[a] = Some(v);
        }
    }
    Ok(out)
}

fn set_color(set: SplitSet) -> RGBColor {
    match set {
        SplitSet::Candidate => RGBColor(214, 39, 40),
        SplitSet::Shared => RGBColor(127, 127, 127),
        SplitSet::Independent => RGBColor(31, 119, 180),
        SplitSet::Extra => RGBColor(44, 160, 44),
        SplitSet::CanaryCandidate => RGBColor(255, 127, 14),
        SplitSet::CanaryIndependent => RGBColor(23, 190, 207),
        SplitSet::CanaryHeldout => RGBColor(148, 103, 189),
        SplitSet::Inputs => RGBColor(0, 0, 0),
    }
}

fn png(buf: Vec<u8>, w: u32, h: u32) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| Error::output("a figure", "its buffer has the wrong size"))?;
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(plot_err)?;
    Ok(out)
}

/// Histograms (as densities, shared bins) of the score per set: PNG bytes.
pub fn histogram_png(sets: &[(SplitSet, Vec<f64>)]) -> Result<Vec<u8>> {
    font_ready()?;
    let all: Vec<f64> = sets.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let mut sorted = all.clone();
    sorted.sort_by(f64::total_cmp);
    let lo = crate::stats::quantile_sorted(&sorted, 0.005);
    let hi = crate::stats::quantile_sorted(&sorted, 0.995);
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1e-3, lo + 1e-3)
    };
    let bins = 40usize;
    let width = (hi - lo) / bins as f64;
    let dens: Vec<(SplitSet, Vec<f64>)> = sets
        .iter()
        .map(|(name, v)| {
            let mut c = vec![0f64; bins];
            for &x in v {
                let b = (((x - lo) / width).floor().max(0.0) as usize).min(bins - 1);
                c[b] += 1.0;
            }
            let n = v.len().max(1) as f64;
            (*name, c.into_iter().map(|x| x / (n * width)).collect())
        })
        .collect();
    let ymax = dens
        .iter()
        .flat_map(|(_, d)| d.iter().copied())
        .fold(0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let (w, h) = (900u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("SSLMem score by set (density)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("score = align_g - align_f")
            .y_desc("density")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        for (name, d) in &dens {
            let color = set_color(*name);
            let pts: Vec<(f64, f64)> = d
                .iter()
                .enumerate()
                .flat_map(|(b, &y)| {
                    let x0 = lo + b as f64 * width;
                    [(x0, y), (x0 + width, y)]
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!(
                    "{name} (n = {})",
                    sets.iter().find(|s| s.0 == *name).map_or(0, |s| s.1.len())
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (0.0, ymax)], BLACK.mix(0.4)))
            .map_err(plot_err)?;
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}

/// Score against typicality, one colour per set (at most 4,000 points per set, evenly taken):
/// PNG bytes. Points are `(typicality, score)`.
pub fn typicality_png(points: &[(SplitSet, Vec<(f64, f64)>)]) -> Result<Vec<u8>> {
    font_ready()?;
    let all: Vec<(f64, f64)> = points.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, -1.0, 1.0);
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.05).max(1e-6);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let (w, h) = (900u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Score against typicality (distance to {TYPICALITY_K} nearest same-class neighbours under g)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("typicality: mean distance to nearest neighbours (higher = more atypical)")
            .y_desc("score")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        for (name, pts) in points {
            let color = set_color(*name);
            let step = pts.len().div_ceil(4000).max(1);
            chart
                .draw_series(
                    pts.iter()
                        .step_by(step)
                        .map(|&(x, y)| Circle::new((x, y), 2, color.mix(0.6).filled())),
                )
                .map_err(plot_err)?
                .label(name.name())
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}

/// One class's most and least memorized examples: (record index, image, score).
pub struct ClassGrid {
    pub label: Option<u8>,
    pub top: Vec<(usize, SourceImage, f64)>,
    pub bottom: Vec<(usize, SourceImage, f64)>,
}

/// The grids of the set the grids are drawn from (candidate when audited: the only set whose
/// scores measure memorization by `f`), per label.
pub(super) fn class_grids(
    items: &[Item],
    records: &[Record],
    set: SplitSet,
    channels: usize,
) -> Vec<ClassGrid> {
    let mut by_label: BTreeMap<Option<u8>, Vec<(usize, f64)>> = BTreeMap::new();
    for (k, r) in records.iter().enumerate() {
        if let (true, Some(s)) = (r.set == set, r.score.as_ref()) {
            by_label.entry(r.label).or_default().push((k, s.score));
        }
    }
    let load = |k: usize| items[k].input.load(channels, Default::default()).ok();
    by_label
        .into_iter()
        .map(|(label, mut v)| {
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let n = GRID_PER_END.min(v.len() / 2).max(1).min(v.len());
            let pick = |xs: &[(usize, f64)]| -> Vec<(usize, SourceImage, f64)> {
                xs.iter()
                    .filter_map(|&(k, s)| load(k).map(|im| (k, im, s)))
                    .collect()
            };
            let bottom: Vec<(usize, f64)> = v.iter().rev().take(n).copied().collect();
            ClassGrid {
                label,
                top: pick(&v[..n]),
                bottom: pick(&bottom),
            }
        })
        .collect()
}

/// An image scaled up `scale` times (nearest neighbour), as RGB.
fn to_rgb(im: &SourceImage, scale: u32) -> image::RgbImage {
    let (w, h) = (im.width as u32, im.height as u32);
    let plane = im.width * im.height;
    image::RgbImage::from_fn(w * scale, h * scale, |x, y| {
        let p = (y / scale) as usize * im.width + (x / scale) as usize;
        if im.channels >= 3 {
            image::Rgb([im.data[p], im.data[plane + p], im.data[2 * plane + p]])
        } else {
            let v = im.data[p];
            image::Rgb([v, v, v])
        }
    })
}

fn encode_png(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(plot_err)?;
    Ok(out)
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

/// All classes in one picture, titled: a row per class (its name on the left), the most
/// memorized on the left half (highest score first), a gap, the least memorized on the right
/// half (lowest score first); under each tile its class and score.
///
/// `memorized`: whether the set's highest scores may be called memorization
/// ([`super::text::scores_are_memorization`]); else the titles speak of scores only.
pub fn grid_png(
    grids: &[ClassGrid],
    set: SplitSet,
    memorized: bool,
    classes: &[String],
) -> Result<Vec<u8>> {
    font_ready()?;
    let (scale, pad) = (2u32, 4u32);
    let tile = grids
        .iter()
        .flat_map(|g| g.top.iter().chain(&g.bottom))
        .map(|(_, im, _)| (im.width.max(im.height)) as u32 * scale)
        .max()
        .unwrap_or(56);
    // Room under each tile for two lines of text: the class and the score.
    let (cell_w, cell_h) = (tile.max(66), tile + 30);
    let (label_w, gap, title_h, halves_h) = (108u32, 28u32, 36u32, 26u32);
    let per = GRID_PER_END as u32;
    let half_w = per * (cell_w + pad);
    let w = label_w + 2 * half_w + gap + pad;
    let rows = grids.len().max(1) as u32;
    let top = title_h + halves_h;
    let h = top + rows * (cell_h + pad) + pad;
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let x_of =
        |right: bool, c: u32| label_w + if right { half_w + gap } else { 0 } + c * (cell_w + pad);
    let y_of = |row: u32| top + row * (cell_h + pad);
    for (row, g) in grids.iter().enumerate() {
        for (right, tiles) in [(false, &g.top), (true, &g.bottom)] {
            for (c, (_, im, _)) in tiles.iter().enumerate() {
                let img = to_rgb(im, scale);
                let x = x_of(right, c as u32) + (cell_w - img.width()) / 2;
                image::imageops::overlay(
                    &mut canvas,
                    &img,
                    i64::from(x),
                    i64::from(y_of(row as u32)),
                );
            }
        }
    }
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let style = |size: u32, pos: HPos| {
            TextStyle::from(("sans-serif", size).into_font())
                .color(&BLACK)
                .pos(Pos::new(pos, VPos::Top))
        };
        let at = |x: u32, y: u32| (x as i32, y as i32);
        let title = if memorized {
            format!(
                "Most and least memorized examples per class ({} set)",
                set.name()
            )
        } else {
            format!("Highest and lowest scores per class ({} set)", set.name())
        };
        root.draw_text(&title, &style(20, HPos::Center), at(w / 2, 8))
            .map_err(plot_err)?;
        let halves = if memorized {
            [
                (false, "most memorized: highest scores, highest first"),
                (true, "least memorized: lowest scores, lowest first"),
            ]
        } else {
            [
                (false, "highest scores, highest first"),
                (true, "lowest scores, lowest first"),
            ]
        };
        for (right, text) in halves {
            let x = x_of(right, 0);
            root.draw_text(text, &style(15, HPos::Center), at(x + half_w / 2, title_h))
                .map_err(plot_err)?;
            let y = title_h + halves_h - 4;
            root.draw(&PathElement::new(
                vec![at(x, y), at(x + half_w - pad, y)],
                BLACK.mix(0.5),
            ))
            .map_err(plot_err)?;
        }
        if grids.is_empty() {
            root.draw_text("no scored examples", &style(14, HPos::Left), at(pad, top))
                .map_err(plot_err)?;
        }
        for (row, g) in grids.iter().enumerate() {
            let y = y_of(row as u32);
            let number = g
                .label
                .map_or("unlabelled".into(), |l| format!("class {l}"));
            let name = g.label.and_then(|l| classes.get(usize::from(l)));
            root.draw_text(&number, &style(14, HPos::Left), at(pad, y + tile / 2 - 16))
                .map_err(plot_err)?;
            if let Some(name) = name {
                root.draw_text(name, &style(14, HPos::Left), at(pad, y + tile / 2))
                    .map_err(plot_err)?;
            }
            // Each tile names its class: by name where the dataset has names.
            let tile_class = name.cloned().unwrap_or_else(|| number.clone());
            for (right, tiles) in [(false, &g.top), (true, &g.bottom)] {
                for (c, (_, _, score)) in tiles.iter().enumerate() {
                    let x = x_of(right, c as u32) + cell_w / 2;
                    root.draw_text(&tile_class, &style(11, HPos::Center), at(x, y + tile + 2))
                        .map_err(plot_err)?;
                    root.draw_text(&num(*score), &style(11, HPos::Center), at(x, y + tile + 15))
                        .map_err(plot_err)?;
                }
            }
        }
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn b64(png: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(png)
}

/// A number of the report's tables: 4 decimals, or 3 significant in scientific notation when
/// tiny or huge; "–" for none, and for a non-finite value (which `summary.json` holds as
/// `null`). Counts are written with `to_string`.
fn num(x: impl Into<Option<f64>>) -> String {
    match x.into() {
        Some(x) if !x.is_finite() => "–".into(),
        Some(x) if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

/// A column of the per-set table: its name, and how a set's cell is written.
type Column = (&'static str, fn(&Group) -> String);

/// The figures a report embeds, as PNG bytes with their file names.
pub struct Figures {
    pub histogram: Vec<u8>,
    pub typicality: Vec<u8>,
    pub grid: Vec<u8>,
    pub grids: Vec<ClassGrid>,
    /// The set the grids are drawn from.
    pub grid_set: SplitSet,
    /// Whether the grid may call its highest scores memorization.
    pub grid_memorized: bool,
    /// `None` when no members-vs-non-members pair of sets was audited.
    pub roc: Option<Vec<u8>>,
}

/// The membership table: AUC with its bootstrap interval, TPR at low FPR with the threshold.
fn membership_table(h: &mut String, summary: &Summary) {
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

/// A figure of the page: its file, what it shows and how to read it.
struct Caption<'a> {
    file: &'a str,
    shows: &'a str,
    read: &'a str,
}

fn figure(h: &mut String, id: &str, png: &[u8], c: &Caption) {
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

/// The run record: what produced these files, from what, with which parameters, and when.
fn run_record(h: &mut String, bundle: &Bundle, params: &AuditParams, run: &RunRecord) {
    let m = &bundle.manifest;
    let row = |h: &mut String, k: &str, v: &str| {
        let _ = writeln!(
            h,
            "<tr><th class=\"l\">{k}</th><td class=\"l\">{v}</td></tr>"
        );
    };
    h.push_str("<h2 id=\"run-record\">Run record</h2><table class=\"record\">\n");
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
    if params.inputs.is_empty() {
        row(h, "f (trained with the audited data)", &files(&m.f));
        row(h, "g (trained without it)", &files(&m.g));
    } else {
        // An audit of inputs does not know what either encoder saw.
        row(h, "f (the encoder audited)", &files(&m.f));
        row(h, "g (the reference encoder)", &files(&m.g));
    }
    row(
        h,
        "dataset",
        &esc(params.dataset.as_deref().unwrap_or("(inputs)")),
    );
    let sets = if !params.sources.is_empty() {
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
    };
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
    h.push_str("</table>\n");
}

/// Per class and set: examples, mean score, share significantly above zero.
fn class_table(h: &mut String, summary: &Summary, classes: &[String]) {
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
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>SSLMem audit</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}\ntable{border-collapse:collapse;margin:0.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}\n.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}\nfigure{margin:1em 0 2em}figcaption{font-size:90%;color:#444;max-width:900px}figcaption .file{color:#777}img.fig{max-width:100%;border:1px solid #ddd}\n.scope{border-left:4px solid #c77700;background:#fff8e6;padding:4px 12px;margin:1em 0}\n.record th{width:16em;vertical-align:top}.record code{white-space:pre-wrap;word-break:break-all}\n.grid td{border:none;padding:2px;text-align:center;font-size:11px}.grid th{font-weight:600}.grid img{image-rendering:pixelated;width:56px;height:56px}\ncode,pre{background:#f6f6f6;padding:1px 4px}pre{padding:8px;overflow-x:auto;font-size:12px}\n</style></head><body>\n");
    h.push_str("<h1>SSLMem audit</h1>\n");
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

    let sets: Vec<SplitSet> = summary.sets.keys().copied().collect();
    h.push_str("<h2>Figures</h2>\n");
    figure(
        &mut h,
        "fig-histogram",
        &figs.histogram,
        &Caption {
            file: "figures/score-histogram.png",
            shows: "the distribution of the score in each audited set, as a density over bins common to all sets (n per set in the legend); the grey vertical line is a score of zero.",
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
    let failed = summary.failed.len();
    let _ = writeln!(
        h,
        "<h2>Notes</h2><p>{} examples scored; {failed} could not be read (listed in summary.json). Typicality uses the first g encoder's representation of the un-augmented image and the audited examples of the same class as neighbours (k = {TYPICALITY_K}).</p>",
        records.iter().filter(|r| r.score.is_some()).count(),
    );
    h.push_str("</body></html>\n");
    Ok(h)
}

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

/// The expected-sign checks and the canary check; nothing when none applies to the sets.
fn checks_table(h: &mut String, summary: &Summary) {
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
fn sets_table(h: &mut String, summary: &Summary) {
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
fn tests_table(h: &mut String, summary: &Summary) {
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

/// The ROC curves of the membership evaluations on log-log axes (low false-positive rates
/// are what matter to an auditor), with the chance diagonal. Rates of zero are drawn at the
/// axis floor, `1e-4` or half of the smallest non-zero rate, whichever is lower.
pub fn roc_png(curves: &[Membership]) -> Result<Vec<u8>> {
    font_ready()?;
    let floor = curves
        .iter()
        .flat_map(|m| m.roc.iter().flat_map(|p| [p.fpr, p.tpr]))
        .filter(|&v| v > 0.0)
        .fold(1e-4f64, |a, v| a.min(v / 2.0));
    let (w, h) = (640u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "ROC of the score: members vs non-members",
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((floor..1.0f64).log_scale(), (floor..1.0f64).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("false-positive rate (non-members called members)")
            .y_desc("true-positive rate (members found)")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot_err)?;
        let diag: Vec<(f64, f64)> = (0..=40)
            .map(|i| {
                let v = floor.powf(1.0 - f64::from(i) / 40.0);
                (v, v)
            })
            .collect();
        chart
            .draw_series(LineSeries::new(diag, BLACK.mix(0.4).stroke_width(1)))
            .map_err(plot_err)?
            .label("chance")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        for m in curves {
            let color = set_color(m.members);
            let pts: Vec<(f64, f64)> = m
                .roc
                .iter()
                .map(|p| (p.fpr.max(floor), p.tpr.max(floor)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!(
                    "{} vs {} (AUC {:.3})",
                    m.members, m.non_members, m.auc
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}

/// Linear-probe accuracy after removing `k` candidates, over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RemovalPoint {
    pub k: usize,
    pub mean: f64,
    pub sd: f64,
    pub seeds: usize,
}

/// A curve of the removal figure: `top` (most memorized removed) or `random`.
pub type RemovalSeries = (String, Vec<RemovalPoint>);

/// The removal experiment's figure: linear-probe accuracy against the number of candidates
/// removed, mean ± standard deviation over seeds, for the most memorized and for random ones.
pub fn removal_png(series: &[RemovalSeries]) -> Result<Vec<u8>> {
    font_ready()?;
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x1, mut y0, mut y1) = (1usize, f64::MAX, f64::MIN);
    for &RemovalPoint { k, mean: m, sd, .. } in pts {
        x1 = x1.max(k);
        y0 = y0.min(m - sd);
        y1 = y1.max(m + sd);
    }
    if y0 > y1 {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.15).max(0.002);
    let (w, h) = (800u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let xmax = x1 as f64 * 1.08;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Linear probe of f after removing k candidates",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-xmax * 0.04..xmax, (y0 - pad)..(y1 + pad))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("k (candidates removed from f's training data)")
            .y_desc("test accuracy (mean ± sd over seeds)")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        for (name, p) in series {
            let color = if name == "top" {
                RGBColor(214, 39, 40)
            } else {
                RGBColor(90, 90, 90)
            };
            let label = if name == "top" {
                "most memorized removed"
            } else {
                "random removed"
            };
            let line: Vec<(f64, f64)> = p.iter().map(|q| (q.k as f64, q.mean)).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(p.iter().map(|q| {
                    let (x, m, sd) = (q.k as f64, q.mean, q.sd);
                    ErrorBar::new_vertical(x, m - sd, m, m + sd, color.stroke_width(2), 8)
                }))
                .map_err(plot_err)?;
            chart
                .draw_series(
                    line.iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.5))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
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

    #[test]
    fn classes_are_named_where_the_dataset_has_names() {
        let names = vec!["T-shirt/top".to_string(), "Trouser".to_string()];
        assert_eq!(class_name(Some(1), &names), "1 Trouser");
        assert_eq!(class_name(Some(7), &names), "class 7");
        assert_eq!(class_name(None, &names), "unlabelled");
    }
}
