//! LayerMem per layer ([`crate::audit::layer_mem`]): the candidates' mean ratio score on each
//! layer's output, with its 95% interval, shallowest layer first.

use plotters::prelude::*;

use super::{font_ready, plot_err, png};
use crate::audit::layer_mem::LayerMem;
use crate::error::Result;

/// LayerMem against depth: a point per layer (mean ratio score of the candidates, 95%
/// interval as a bar), joined by a line, the layers named under the axis.
pub fn layer_mem_png(m: &LayerMem) -> Result<Vec<u8>> {
    font_ready()?;
    let pts: Vec<(usize, f64, f64, f64)> = m
        .layers
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.layer_mem.map(|v| (i, v.mean, v.ci95[0], v.ci95[1])))
        .collect();
    let (mut y0, mut y1) = (0f64, 0f64);
    for &(_, _, lo, hi) in &pts {
        y0 = y0.min(lo);
        y1 = y1.max(hi);
    }
    let pad = ((y1 - y0) * 0.12).max(0.01);
    let names: Vec<String> = m.layers.iter().map(|r| r.layer.clone()).collect();
    let n = names.len().max(1);
    let (w, h) = (800u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("LayerMem of the {} set by layer", m.set.name()),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (y0 - pad)..(y1 + pad))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("layer (input side first; the bundle's scored output last)")
            .y_desc(format!(
                "mean ratio score (95% interval, {} images)",
                m.images
            ))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        let color = RGBColor(31, 119, 180);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(i, m, _, _)| (i as f64, m)),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?;
        chart
            .draw_series(pts.iter().map(|&(i, m, lo, hi)| {
                ErrorBar::new_vertical(i as f64, lo, m, hi, color.stroke_width(2), 10)
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(i, m, _, _)| Circle::new((i as f64, m), 4, color.filled())),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                [(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
                BLACK.mix(0.4),
            ))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}
