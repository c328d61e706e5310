//! The ROC curves of a score used as a membership test (members against non-members), on
//! log-log axes: the audit's score ([`roc_png`]), and every estimator side by side
//! ([`estimators_roc_png`]: how much the second encoder buys).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{font_ready, legend, plot_err, png, set_color};
use crate::audit::estimators::{Estimator, EstimatorMembership, PAIRS};
use crate::error::Result;
use crate::membership::{Membership, RocPoint};

/// One curve of a panel: its legend label, colour and points.
struct Curve<'a> {
    label: String,
    color: RGBColor,
    roc: &'a [RocPoint],
}

/// Rates of zero are drawn at this floor: `1e-4` or half of the smallest non-zero rate,
/// whichever is lower.
fn floor_of<'a>(rocs: impl Iterator<Item = &'a [RocPoint]>) -> f64 {
    rocs.flat_map(|r| r.iter().flat_map(|p| [p.fpr, p.tpr]))
        .filter(|&v| v > 0.0)
        .fold(1e-4f64, |a, v| a.min(v / 2.0))
}

/// One log-log ROC panel with the chance diagonal and a legend.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[Curve],
    floor: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
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
    for c in curves {
        let color = c.color;
        let pts: Vec<(f64, f64)> = c
            .roc
            .iter()
            .map(|p| (p.fpr.max(floor), p.tpr.max(floor)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, Some(SeriesLabelPosition::LowerRight), 13)
}

/// The ROC curves of the membership evaluations on log-log axes (low false-positive rates
/// are what matter to an auditor), with the chance diagonal.
pub fn roc_png(curves: &[Membership]) -> Result<Vec<u8>> {
    font_ready()?;
    let floor = floor_of(curves.iter().map(|m| m.roc.as_slice()));
    let (w, h) = (640u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let curves: Vec<Curve> = curves
            .iter()
            .map(|m| Curve {
                label: format!("{} vs {} (AUC {:.3})", m.members, m.non_members, m.auc),
                color: set_color(m.members),
                roc: &m.roc,
            })
            .collect();
        panel(
            &root,
            "ROC of the score: members vs non-members",
            &curves,
            floor,
        )?;
        root.present().map_err(plot_err)?;
    }
    png(buf, w, h)
}

/// Each estimator's colour (matplotlib's tab10 order).
fn estimator_color(e: Estimator) -> RGBColor {
    match e {
        Estimator::Sslmem => RGBColor(214, 39, 40),
        Estimator::AlignF => RGBColor(127, 127, 127),
        Estimator::AlignFPercentile => RGBColor(31, 119, 180),
        Estimator::KnnGap => RGBColor(44, 160, 44),
    }
}

/// One panel per pair of sets evaluated (candidate vs extra, canary-candidate vs
/// canary-heldout), each with a curve per estimator; `None` when nothing was evaluated.
pub fn estimators_roc_png(evals: &[EstimatorMembership]) -> Result<Option<Vec<u8>>> {
    let pairs: Vec<_> = PAIRS
        .into_iter()
        .filter(|&(m, n)| {
            evals
                .iter()
                .any(|e| e.membership.members == m && e.membership.non_members == n)
        })
        .collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    font_ready()?;
    let floor = floor_of(evals.iter().map(|e| e.membership.roc.as_slice()));
    let (w, h) = (640 * pairs.len() as u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let areas = root.split_evenly((1, pairs.len()));
        for ((m, n), area) in pairs.iter().zip(&areas) {
            let curves: Vec<Curve> = evals
                .iter()
                .filter(|e| e.membership.members == *m && e.membership.non_members == *n)
                .map(|e| Curve {
                    label: format!("{} (AUC {:.3})", e.estimator, e.membership.auc),
                    color: estimator_color(e.estimator),
                    roc: &e.membership.roc,
                })
                .collect();
            panel(area, &format!("{m} vs {n}: each estimator"), &curves, floor)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(Some(png(buf, w, h)?))
}
