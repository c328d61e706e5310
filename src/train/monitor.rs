//! Memorization measured while an encoder trains: every few epochs, the mean alignment
//! (SSLMem's `align`, l2 distance of l2-normalised outputs, `K` view pairs drawn from the
//! training augmentations) of a fixed sample of the run's own training images and of images
//! it never sees, and the AUC of "seen" against "unseen" (a tighter alignment counts as
//! "seen"). One run thus shows when, and whether, a gap opens between the images an encoder
//! trained on and the rest, before any `g` is trained.
//!
//! Both the representation (what is exported and scored) and the projection (what the SSL
//! loss sees) are measured, in eval mode (batch-norm running statistics, as exported).
//!
//! Each measurement also says how many directions each output uses (its effective rank over
//! the un-augmented seen and unseen images, [`super::collapse`]): a run whose outputs
//! collapse is unlikely to show memorization in its audit, and the trainer says so.

use tch::{Device, Tensor};

use super::collapse::spread;
use super::model::Encoder;
use crate::augment::{Augmenter, Normalize};
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::membership::auc;
use crate::rng::splitmix64;
use crate::score::{distance, Distance, RepNorm};

/// Images the monitor follows, as indices of the training array.
#[derive(Clone, Debug, Default)]
pub struct MonitorSets {
    /// A sample of the run's training examples.
    pub seen: Vec<usize>,
    /// Examples of the same distribution the run never trains on.
    pub unseen: Vec<usize>,
    /// Canaries the run trains on, and held-out canaries (both empty without canaries).
    pub canaries_seen: Vec<usize>,
    pub canaries_unseen: Vec<usize>,
}

pub use crate::recipe::monitor::{Gap, MonitorReport, MonitorSpec};

/// What a trainer measures, and on which images.
#[derive(Clone, Debug)]
pub struct Monitor {
    pub spec: MonitorSpec,
    pub sets: MonitorSets,
}

impl Monitor {
    /// Whether to measure after `epochs_done` of `epochs`: every [`MonitorSpec::every`]
    /// epochs and after the last; never when `every` is 0.
    pub fn due(&self, epochs_done: usize, epochs: usize) -> bool {
        self.spec.every > 0
            && (epochs_done.is_multiple_of(self.spec.every) || epochs_done == epochs)
    }
}

/// One measurement during training, with the outputs it found collapsed.
pub struct Measured {
    pub report: MonitorReport,
    pub collapsed: Vec<&'static str>,
}

impl Measured {
    /// `report` after `epochs_done` epochs ([`MonitorReport::collapsed`] judges it).
    pub fn new(report: MonitorReport, epochs_done: usize) -> Self {
        let collapsed = report.collapsed(epochs_done);
        Self { report, collapsed }
    }

    /// The progress bar's note on it (` | seen-vs-unseen AUC rep ... proj ...`).
    pub fn progress(&self) -> String {
        let r = &self.report;
        format!(
            " | seen-vs-unseen AUC rep {:.3} proj {:.3}{}{}{}",
            r.representation.auc,
            r.projection.auc,
            r.canaries_projection
                .map(|g| format!(", canaries proj {:.3}", g.auc))
                .unwrap_or_default(),
            r.projection_spread
                .map(|s| format!(" | effective rank proj {s}"))
                .unwrap_or_default(),
            if self.collapsed.is_empty() {
                String::new()
            } else {
                format!(" | COLLAPSED: {}", self.collapsed.join(", "))
            }
        )
    }

    /// Logs it (an info line; a warning too when an output collapsed).
    pub fn log(&self, run: &str, epoch: usize) {
        let r = &self.report;
        if !self.collapsed.is_empty() {
            tracing::warn!(
                run = %run,
                epoch,
                representation = %r.representation_spread.map(|s| s.to_string()).unwrap_or_default(),
                projection = %r.projection_spread.map(|s| s.to_string()).unwrap_or_default(),
                "COLLAPSED ({}): effective rank below {:.0}% of the \
                 output's dimension: its audit is unlikely to show \
                 memorization; change the method's settings \
                 (docs/train.md)",
                self.collapsed.join(", "),
                100.0 * super::collapse::COLLAPSE_FRACTION
            );
        }
        tracing::info!(
            run = %run,
            epoch,
            align_seen = r.representation.align_seen,
            align_unseen = r.representation.align_unseen,
            auc = r.representation.auc,
            projection_auc = r.projection.auc,
            canary_auc = r.canaries_representation.map(|g| g.auc),
            canary_projection_auc = r.canaries_projection.map(|g| g.auc),
            projection_effective_rank = r.projection_spread.map(|s| s.effective_rank),
            "memorization monitor"
        );
    }
}

/// An evenly spaced sample of at most `n` of `pool` (deterministic, order kept).
pub fn sample(pool: &[usize], n: usize) -> Vec<usize> {
    if pool.len() <= n {
        return pool.to_vec();
    }
    (0..n).map(|k| pool[k * pool.len() / n]).collect()
}

/// Mean alignment per image of `indices` under `enc`, for the representation and the
/// projection: `K` view pairs from `augmenter` seeded by (`seed`, index, view).
#[allow(clippy::too_many_arguments)]
fn alignments(
    enc: &Encoder,
    data: &ImageArray,
    indices: &[usize],
    augmenter: &Augmenter,
    norm: &Normalize,
    pairs: usize,
    seed: u64,
    device: Device,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let len = data.channels * data.height * data.width;
    let shape = [
        0i64,
        data.channels as i64,
        data.height as i64,
        data.width as i64,
    ];
    let mut rep = Vec::with_capacity(indices.len());
    let mut proj = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(64) {
        // Views 2k and 2k+1 of each image are pair k.
        let views = 2 * pairs;
        let mut buf = vec![0f32; chunk.len() * views * len];
        for (dst, &i) in buf.chunks_exact_mut(views * len).zip(chunk) {
            let img = data
                .get(i)
                .map_err(|e| Error::Param(format!("example {i}: {e}")))?
                .to_planes();
            for (v, d) in dst.chunks_exact_mut(len).enumerate() {
                norm.write(&augmenter.view(&img, seed, i as u64, v as u64), d);
            }
        }
        let mut s = shape;
        s[0] = (chunk.len() * views) as i64;
        let x = Tensor::from_slice(&buf).reshape(s).to_device(device);
        let out = tch::no_grad(|| enc.forward(&x, false));
        for (t, acc) in [
            (&out.representation, &mut rep),
            (&out.projection, &mut proj),
        ] {
            let d = t.size()[1] as usize;
            let v = Vec::<f32>::try_from(t.to_device(Device::Cpu).flatten(0, -1))
                .map_err(|e| Error::Train(format!("monitor: {e}")))?;
            for img in v.chunks_exact(views * d) {
                let mean = img
                    .chunks_exact(2 * d)
                    .map(|p| distance(&p[..d], &p[d..], RepNorm::L2, Distance::L2))
                    .sum::<f64>()
                    / pairs as f64;
                acc.push(mean);
            }
        }
    }
    Ok((rep, proj))
}

fn gap(seen: &[f64], unseen: &[f64]) -> Gap {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;
    // "Member" = tighter alignment: negate so that higher means member.
    let neg = |x: &[f64]| x.iter().map(|v| -v).collect::<Vec<_>>();
    Gap {
        align_seen: mean(seen),
        align_unseen: mean(unseen),
        auc: auc(&neg(seen), &neg(unseen)).unwrap_or(f64::NAN),
    }
}

/// Measures the gaps of `enc` on `sets`. Views use a seed of their own, so they are not
/// the views the run trained on.
pub fn measure(
    enc: &Encoder,
    data: &ImageArray,
    sets: &MonitorSets,
    spec: &MonitorSpec,
    augmenter: &Augmenter,
    norm: &Normalize,
    device: Device,
) -> Result<MonitorReport> {
    let seed = splitmix64(0x4D_4F4E_4954_4F52);
    let pairs = spec.pairs.max(1);
    let run = |idx: &[usize]| alignments(enc, data, idx, augmenter, norm, pairs, seed, device);
    let (sr, sp) = run(&sets.seen)?;
    let (ur, up) = run(&sets.unseen)?;
    let (canaries_representation, canaries_projection) =
        if sets.canaries_seen.is_empty() || sets.canaries_unseen.is_empty() {
            (None, None)
        } else {
            let (cr, cp) = run(&sets.canaries_seen)?;
            let (hr, hp) = run(&sets.canaries_unseen)?;
            (Some(gap(&cr, &hr)), Some(gap(&cp, &hp)))
        };
    let all: Vec<usize> = sets.seen.iter().chain(&sets.unseen).copied().collect();
    let (representation_spread, projection_spread) = if all.is_empty() {
        (None, None)
    } else {
        let x = super::eval::images(data, &all, norm, device)?;
        let out = tch::no_grad(|| enc.forward(&x, false));
        (spread(&out.representation)?, spread(&out.projection)?)
    };
    Ok(MonitorReport {
        representation: gap(&sr, &ur),
        projection: gap(&sp, &up),
        canaries_representation,
        canaries_projection,
        representation_spread,
        projection_spread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighter_seen_alignment_is_an_auc_above_one_half() {
        // Seen images aligned tighter (smaller distances) than unseen ones: a gap.
        let g = gap(&[0.1, 0.2, 0.3], &[0.25, 0.35, 0.45, 0.5]);
        assert!((g.align_seen - 0.2).abs() < 1e-12);
        assert!((g.align_unseen - 0.3875).abs() < 1e-12);
        // Pairs (seen, unseen) with seen < unseen: 0.1 and 0.2 below all 4, 0.3 below 3 of 4:
        // 11 of 12.
        assert!((g.auc - 11.0 / 12.0).abs() < 1e-12, "{}", g.auc);
        // The same distribution on both sides: no gap.
        assert!((gap(&[0.2, 0.4], &[0.4, 0.2]).auc - 0.5).abs() < 1e-12);
    }

    #[test]
    fn samples_are_evenly_spaced_and_deterministic() {
        let pool: Vec<usize> = (100..110).collect();
        assert_eq!(sample(&pool, 5), [100, 102, 104, 106, 108]);
        assert_eq!(sample(&pool, 20), pool);
    }
}
