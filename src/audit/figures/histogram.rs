//! The score histogram: each set's scores as a density over bins common to all sets.

use plotters::prelude::*;

use super::{font_ready, plot_err, png, set_color};
use crate::audit::SplitSet;
use crate::error::Result;

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
