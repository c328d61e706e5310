//! The trainer's removal experiment (`sslmem-train removal`): linear-probe accuracy of `f`
//! after removing its `k` most memorized candidates, against removing `k` random ones.

use plotters::prelude::*;

use super::{font_ready, legend, plot_err, png};
use crate::error::Result;

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
        legend(&mut chart, None, 14)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}
