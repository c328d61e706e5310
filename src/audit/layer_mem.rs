//! LayerMem (Wang et al. 2024, *Localizing Memorization in SSL Vision Encoders*, section 4.1;
//! docs/science.md#layermem): where in the encoder memorization builds up. For each layer `l`
//! the bundle lists (then its scored output, the last), every image of a set is scored as the
//! audit scores it, on the outputs of layer `l` of `f` and `g` (a feature map flattened per
//! image), and the ratio score `(align_g - align_f) / (align_g + align_f)` averaged over the
//! set: LayerMem(l). ΔLayerMem(l) = LayerMem(l) - LayerMem(l - 1), paired over the same
//! images. Each comes with its 95% interval over the images ([`crate::stats::mean_interval`]).
//!
//! The paper's reference trend: rising with depth, 0.091 after the first layer to 0.308 after
//! the last (ResNet-9, SimCLR, CIFAR-10). Its public code range-normalises the raw score
//! instead of taking the ratio; this follows the paper's definition.

use serde::{Deserialize, Serialize};

use super::{Item, Record, SplitSet};
use crate::engine::Engine;
use crate::error::Result;
use crate::score::ScoreOptions;
use crate::stats::{mean_interval, MeanInterval};

/// One layer's LayerMem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// The encoder output, as the manifest names it (`layer1`, ..., then the scored output).
    pub layer: String,
    /// The mean ratio score over the images, with its interval; `None` below two images.
    pub layer_mem: Option<MeanInterval>,
    /// LayerMem minus the previous layer's, paired over the images; absent for the first.
    pub delta: Option<MeanInterval>,
}

/// LayerMem of one set, in `summary.json` (`layer_mem`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMem {
    /// The set averaged over: candidate (members of `f` that `g` did not see).
    pub set: SplitSet,
    /// Images scored on every layer (an image some layer could not score is left out of all).
    pub images: usize,
    /// The layers, shallowest first, the bundle's scored output last.
    pub layers: Vec<LayerRow>,
}

/// The outputs LayerMem goes through: the manifest's layers, then its scored output.
pub fn outputs(engine: &Engine) -> Vec<String> {
    let r = &engine.bundle().manifest.representation;
    r.layers
        .iter()
        .filter(|l| **l != r.output)
        .cloned()
        .chain(std::iter::once(r.output.clone()))
        .collect()
}

/// LayerMem of the candidate set's scored images: `None` when the bundle lists no layers, has
/// no `g`, or no candidate was scored.
///
/// Errors: the engine fails on a whole batch.
pub(super) fn measure(
    engine: &Engine,
    items: &[Item],
    records: &[Record],
    opts: &ScoreOptions,
) -> Result<Option<LayerMem>> {
    let bundle = engine.bundle();
    let set = SplitSet::Candidate;
    if bundle.manifest.representation.layers.is_empty() || bundle.g.is_empty() {
        return Ok(None);
    }
    let channels = engine.input().channels;
    let images: Vec<_> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.set == set && r.score.is_some())
        .filter_map(|(k, _)| items[k].input.load(channels, Default::default()).ok())
        .collect();
    if images.is_empty() {
        return Ok(None);
    }
    let outputs = outputs(engine);
    tracing::info!(
        images = images.len(),
        layers = outputs.len(),
        "LayerMem: scoring the candidates on every layer"
    );
    // ratio[l][i]: image i's ratio score on layer l (None where it could not be scored).
    let mut ratio: Vec<Vec<Option<f64>>> = Vec::with_capacity(outputs.len());
    for out in &outputs {
        let scored = engine
            .with_output(out)?
            .score_each(&images, opts, &|_| {})?;
        ratio.push(
            scored
                .into_iter()
                .map(|s| s.ok().map(|s| s.score_ratio).filter(|v| v.is_finite()))
                .collect(),
        );
    }
    Ok(Some(from_ratios(set, &outputs, &ratio)))
}

/// LayerMem from the per-layer, per-image ratio scores (`ratio[l][i]`): images with a score on
/// every layer only.
pub fn from_ratios(set: SplitSet, outputs: &[String], ratio: &[Vec<Option<f64>>]) -> LayerMem {
    let n = ratio.first().map_or(0, Vec::len);
    let complete: Vec<usize> = (0..n)
        .filter(|&i| ratio.iter().all(|r| r.get(i).copied().flatten().is_some()))
        .collect();
    let column = |l: usize| -> Vec<f64> {
        complete
            .iter()
            .map(|&i| ratio[l][i].unwrap_or(f64::NAN))
            .collect()
    };
    let layers = outputs
        .iter()
        .enumerate()
        .map(|(l, name)| {
            let here = column(l);
            let delta = (l > 0).then(|| {
                let before = column(l - 1);
                let d: Vec<f64> = here.iter().zip(&before).map(|(a, b)| a - b).collect();
                mean_interval(&d)
            });
            LayerRow {
                layer: name.clone(),
                layer_mem: mean_interval(&here),
                delta: delta.flatten(),
            }
        })
        .collect();
    LayerMem {
        set,
        images: complete.len(),
        layers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_mem_and_its_increase_match_a_hand_computation() {
        let outputs = ["layer1".to_string(), "layer2".into(), "projection".into()];
        // Four images; image 3 failed on layer2 and is left out everywhere.
        let ratio = vec![
            vec![Some(0.1), Some(0.2), Some(0.3), Some(0.9)],
            vec![Some(0.2), Some(0.4), Some(0.3), None],
            vec![Some(0.5), Some(0.4), Some(0.6), Some(0.0)],
        ];
        let m = from_ratios(SplitSet::Candidate, &outputs, &ratio);
        assert_eq!(m.images, 3);
        let mean = |r: &LayerRow| r.layer_mem.expect("mean").mean;
        assert!((mean(&m.layers[0]) - 0.2).abs() < 1e-12);
        assert!((mean(&m.layers[1]) - 0.3).abs() < 1e-12);
        assert!((mean(&m.layers[2]) - 0.5).abs() < 1e-12);
        assert!(m.layers[0].delta.is_none());
        // Paired differences layer2 - layer1: 0.1, 0.2, 0.0 (mean 0.1, sd 0.1).
        let d = m.layers[1].delta.expect("delta");
        assert!((d.mean - 0.1).abs() < 1e-12 && (d.sd - 0.1).abs() < 1e-12);
        // t(0.975, 2) = 4.302653.
        assert!((d.ci95[1] - (0.1 + 4.302_653 * 0.1 / 3f64.sqrt())).abs() < 1e-6);
        // projection - layer2: 0.3, 0.0, 0.3.
        assert!((m.layers[2].delta.expect("delta").mean - 0.2).abs() < 1e-12);
        // One image: no interval.
        let one = from_ratios(SplitSet::Candidate, &outputs[..1], &[vec![Some(0.4)]]);
        assert_eq!(one.images, 1);
        assert!(one.layers[0].layer_mem.is_none());
    }
}
