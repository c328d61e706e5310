//! Score against typicality: one point per example, one colour per set.

use plotters::prelude::*;

use super::{font_ready, legend, plot_err, png, set_color};
use crate::audit::typicality::TYPICALITY_K;
use crate::audit::SplitSet;
use crate::error::Result;

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
        legend(&mut chart, None, 14)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}
