//! The score histogram: each set's scores as a density over bins common to all sets.
//!
//! The axis covers the bulk of the scores (the 0.5% to the 99.5% quantile of all sets
//! together), widened to the lowest and the highest score where they lie near it (within half
//! the bulk's width), with bin edges on multiples of a round bin width (1, 2, 2.5 or 5 times a
//! power of ten; about 40 bins to the bulk). Scores farther out, such as canaries that score
//! far above everything else, are not binned: a grey panel beside the axis on their side
//! counts them per set. No edge bin holds values from beyond it, which would read as data.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{font_ready, legend, plot_err, png, set_color};
use crate::audit::text::fmt_g;
use crate::audit::SplitSet;
use crate::error::Result;
use crate::stats::quantile_sorted;

/// About how many bins the bulk of the scores spans.
const BULK_BINS: f64 = 40.0;
/// How far past the bulk the axis reaches to take in the extremes, as a share of its width.
const REACH: f64 = 0.5;
/// The chart's size in pixels, without the panels.
const CHART: (u32, u32) = (900, 480);
/// The width of a panel of scores beyond the axis, in pixels.
const PANEL_W: u32 = 190;

/// Where a score goes: below the axis, into a bin, or above the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Below,
    Bin(usize),
    Above,
}

/// The histogram's bins: `count` bins of `width` from `lo`; `below` and `above` say whether
/// scores beyond that end are counted apart rather than binned.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bins {
    lo: f64,
    width: f64,
    count: usize,
    below: bool,
    above: bool,
}

impl Bins {
    /// Bins for `values` (non-finite ones are ignored); see the module's documentation.
    fn new(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (min, max) = match (sorted.first(), sorted.last()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => (0.0, 0.0),
        };
        let q = |p| {
            if sorted.is_empty() {
                0.0
            } else {
                quantile_sorted(&sorted, p)
            }
        };
        let (q_lo, q_hi) = (q(0.005), q(0.995));
        // A bulk of one value (identical encoders score every image 0) gets a small width.
        let (q_lo, q_hi) = if q_hi > q_lo {
            (q_lo, q_hi)
        } else {
            (q_lo - 1e-3, q_lo + 1e-3)
        };
        let bulk = q_hi - q_lo;
        let width = nice(bulk / BULK_BINS);
        let below = q_lo - min > REACH * bulk;
        let above = max - q_hi > REACH * bulk;
        let start = if below { q_lo } else { min.min(q_lo) };
        let end = if above { q_hi } else { max.max(q_hi) };
        let lo = (start / width).floor() * width;
        let count = (((end - lo) / width).ceil() as usize).max(1);
        Self {
            lo,
            width,
            count,
            below,
            above,
        }
    }

    /// The axis's upper end.
    fn hi(&self) -> f64 {
        self.lo + self.count as f64 * self.width
    }

    fn slot(&self, x: f64) -> Slot {
        if self.below && x < self.lo {
            Slot::Below
        } else if self.above && x > self.hi() {
            Slot::Above
        } else {
            let b = ((x - self.lo) / self.width).floor().max(0.0) as usize;
            Slot::Bin(b.min(self.count - 1))
        }
    }
}

/// The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least `x` (`x > 0`).
fn nice(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= x * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// One set's histogram: its density per bin, and its scores below and above the axis.
struct Counts {
    set: SplitSet,
    n: usize,
    density: Vec<f64>,
    below: usize,
    above: usize,
}

fn counts(bins: &Bins, set: SplitSet, values: &[f64]) -> Counts {
    let mut c = Counts {
        set,
        n: values.len(),
        density: vec![0.0; bins.count],
        below: 0,
        above: 0,
    };
    for &x in values.iter().filter(|x| x.is_finite()) {
        match bins.slot(x) {
            Slot::Below => c.below += 1,
            Slot::Bin(b) => c.density[b] += 1.0,
            Slot::Above => c.above += 1,
        }
    }
    let scale = values.len().max(1) as f64 * bins.width;
    for d in &mut c.density {
        *d /= scale;
    }
    c
}

/// Histograms (as densities, shared bins) of the score per set, with a panel beside the axis
/// for scores beyond it, if any: PNG bytes.
pub fn histogram_png(sets: &[(SplitSet, Vec<f64>)]) -> Result<Vec<u8>> {
    font_ready()?;
    let all: Vec<f64> = sets.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let bins = Bins::new(&all);
    let hist: Vec<Counts> = sets.iter().map(|(s, v)| counts(&bins, *s, v)).collect();
    let panel = |on: bool| if on { PANEL_W } else { 0 };
    let (left_w, right_w) = (panel(bins.below), panel(bins.above));
    let (w, h) = (left_w + CHART.0 + right_w, CHART.1);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (left, rest) = root.split_horizontally(left_w);
        let (middle, right) = rest.split_horizontally(CHART.0);
        chart(&middle, &bins, &hist)?;
        if bins.below {
            let rows = hist.iter().map(|c| (c.set, c.below, c.n));
            beyond(&left, &format!("below {}", fmt_g(bins.lo, 3)), rows)?;
        }
        if bins.above {
            let rows = hist.iter().map(|c| (c.set, c.above, c.n));
            beyond(&right, &format!("above {}", fmt_g(bins.hi(), 3)), rows)?;
        }
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}

/// The binned scores: one step line per set, the zero line, the legend.
fn chart(area: &DrawingArea<BitMapBackend<'_>, Shift>, bins: &Bins, hist: &[Counts]) -> Result<()> {
    let ymax = hist
        .iter()
        .flat_map(|c| c.density.iter().copied())
        .fold(0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("SSLMem score by set (density)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(bins.lo..bins.hi(), 0f64..ymax)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("score = align_g - align_f")
        .y_desc("density")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    for c in hist {
        let color = set_color(c.set);
        let pts: Vec<(f64, f64)> = c
            .density
            .iter()
            .enumerate()
            .flat_map(|(b, &y)| {
                let x0 = bins.lo + b as f64 * bins.width;
                [(x0, y), (x0 + bins.width, y)]
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("{} (n = {})", c.set, c.n))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (0.0, ymax)], BLACK.mix(0.4)))
        .map_err(plot_err)?;
    legend(&mut chart, None, 14)?;
    Ok(())
}

/// A grey panel for the scores beyond one end of the axis: its heading (`title`: which end),
/// then each set with such scores, in its colour, with how many of its scores they are.
/// `rows`: (set, scores beyond, scores in the set).
fn beyond(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    rows: impl Iterator<Item = (SplitSet, usize, usize)>,
) -> Result<()> {
    let text = |size: u32| {
        TextStyle::from(("sans-serif", size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Top))
    };
    let (x0, x1, y0, y1) = (8i32, PANEL_W as i32 - 8, 46i32, CHART.1 as i32 - 52);
    area.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        RGBColor(238, 238, 238).filled(),
    ))
    .map_err(plot_err)?;
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.mix(0.5)))
        .map_err(plot_err)?;
    let x = x0 + 8;
    let mut y = y0 + 8;
    for line in ["scores", title, "(not binned)"] {
        area.draw_text(line, &text(14), (x, y)).map_err(plot_err)?;
        y += 18;
    }
    y += 10;
    for (set, k, n) in rows.filter(|r| r.1 > 0) {
        area.draw(&Rectangle::new(
            [(x, y + 2), (x + 10, y + 12)],
            set_color(set).filled(),
        ))
        .map_err(plot_err)?;
        area.draw_text(set.name(), &text(13), (x + 16, y))
            .map_err(plot_err)?;
        let share = format!("{k} of {n} ({}%)", fmt_g(100.0 * k as f64 / n as f64, 3));
        area.draw_text(&share, &text(13), (x + 16, y + 16))
            .map_err(plot_err)?;
        y += 40;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` scores evenly spread over `[a, b]`.
    fn spread(n: usize, a: f64, b: f64) -> Vec<f64> {
        (0..n)
            .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
            .collect()
    }

    #[test]
    fn far_scores_are_counted_beside_the_axis_not_piled_into_its_edge_bin() {
        // The bulk within ±0.05 and a few canaries (0.4% of all scores) near 1: beyond the
        // 99.5% quantile that bounded the axis before, whose last bin took them all in.
        let bulk = spread(2000, -0.05, 0.05);
        let canaries = spread(8, 0.9, 1.0);
        let all: Vec<f64> = bulk.iter().chain(&canaries).copied().collect();
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(quantile_sorted(&sorted, 0.995) < 0.9);
        let bins = Bins::new(&all);
        assert!(bins.above && !bins.below);
        assert!(bins.hi() < 0.9);
        for &x in &canaries {
            assert_eq!(bins.slot(x), Slot::Above, "{x}");
        }
        let c = counts(&bins, SplitSet::CanaryCandidate, &canaries);
        assert_eq!((c.above, c.below), (8, 0));
        assert!(c.density.iter().all(|&d| d == 0.0));
        // Every score of the bulk is binned.
        let b = counts(&bins, SplitSet::Shared, &bulk);
        assert_eq!((b.above, b.below), (0, 0));
        let total: f64 = b.density.iter().sum::<f64>() * bins.width;
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // The panel widens the picture.
        let png = histogram_png(&[
            (SplitSet::Shared, bulk),
            (SplitSet::CanaryCandidate, canaries),
        ])
        .expect("figure");
        let img = image::load_from_memory(&png).expect("png");
        assert_eq!((img.width(), img.height()), (CHART.0 + PANEL_W, CHART.1));
    }

    #[test]
    fn scores_near_the_bulk_widen_the_axis_and_land_in_their_own_bin() {
        let mut all = spread(2000, -0.05, 0.05);
        all.extend([0.07, 0.071, -0.08]);
        let bins = Bins::new(&all);
        assert!(!bins.above && !bins.below);
        assert!(bins.lo <= -0.08 && bins.hi() >= 0.071);
        for x in [0.07, -0.08] {
            let Slot::Bin(b) = bins.slot(x) else {
                panic!("{x} is not binned");
            };
            let from = bins.lo + b as f64 * bins.width;
            assert!(
                from <= x && x <= from + bins.width,
                "{x} in [{from}, +{}]",
                bins.width
            );
        }
    }

    #[test]
    fn bin_edges_are_round_numbers() {
        for (x, want) in [
            (0.0021, 0.0025),
            (0.003, 0.005),
            (0.01, 0.01),
            (0.011, 0.02),
            (7.0, 10.0),
        ] {
            assert!((nice(x) - want).abs() < 1e-12, "{x}: {}", nice(x));
        }
        let bins = Bins::new(&spread(500, -0.6, 0.63));
        let steps = bins.lo / bins.width;
        assert!((steps - steps.round()).abs() < 1e-9, "{bins:?}");
        // One repeated score (identical encoders): a small axis around it.
        let flat = Bins::new(&[0.0; 10]);
        assert!(flat.lo < 0.0 && flat.hi() > 0.0 && !flat.above && !flat.below);
        let Slot::Bin(b) = flat.slot(0.0) else {
            panic!("0 is not binned");
        };
        let from = flat.lo + b as f64 * flat.width;
        assert!(from <= 0.0 && 0.0 < from + flat.width, "{flat:?}");
    }
}
