//! The ROC curves of the score used as a membership test (members against non-members), on
//! log-log axes.

use plotters::prelude::*;

use super::{font_ready, legend, plot_err, png, set_color};
use crate::error::Result;
use crate::membership::Membership;

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
        legend(&mut chart, Some(SeriesLabelPosition::LowerRight), 13)?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}
