//! The audit's figures, drawn with `plotters` (bitmap backend, the embedded DejaVu Sans font)
//! and encoded as PNG: one file per figure (`histogram`: the score per set;
//! `score_vs_typicality`; `grid`: the most and least memorized examples per class; `roc`: the
//! membership test; `layer_mem`: LayerMem by layer), plus the trainer's removal experiment
//! (`removal`).
//!
//! Nothing here depends on the clock or the machine: the same scores give the same bytes.

mod grid;
mod histogram;
mod layer_mem;
mod removal;
mod roc;
mod score_vs_typicality;

use std::io::Cursor;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::SplitSet;
use crate::error::{Error, Result};

pub(super) use grid::{class_grids, to_rgb, GRID_PER_END};
pub use grid::{grid_png, ClassGrid};
pub use histogram::histogram_png;
pub use layer_mem::layer_mem_png;
pub use removal::{removal_png, RemovalPoint, RemovalSeries};
pub use roc::{estimators_roc_png, roc_png};
pub use score_vs_typicality::typicality_png;

const FONT: &[u8] = include_bytes!("../../../vendor/fonts/DejaVuSans.ttf");

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
    /// Every estimator's ROC ([`estimators_roc_png`]); `None` as `roc`.
    pub roc_estimators: Option<Vec<u8>>,
    /// LayerMem by layer ([`layer_mem_png`]); `None` without a LayerMem.
    pub layer_mem: Option<Vec<u8>>,
}

/// Registers the embedded font as `sans-serif` (once per process).
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

/// Each set's colour, the same in every figure (matplotlib's tab10 where it has one).
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
        SplitSet::Reference => RGBColor(188, 189, 34),
        SplitSet::Pool => RGBColor(140, 86, 75),
    }
}

/// Draws a chart's legend in the figures' one style (a white box with a grey border, labels
/// at `font` pixels); `position`: plotters' default place when `None`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: Option<SeriesLabelPosition>,
    font: u32,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    let mut style = chart.configure_series_labels();
    if let Some(p) = position {
        style.position(p);
    }
    style
        .label_font(("sans-serif", font))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(plot_err)
}

/// An RGB buffer of `w` x `h` pixels, as PNG bytes.
fn png(buf: Vec<u8>, w: u32, h: u32) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| Error::output("a figure", "its buffer has the wrong size"))?;
    encode_png(&img)
}

/// An image as PNG bytes.
pub(super) fn encode_png(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(plot_err)?;
    Ok(out)
}
