//! The typicality of each audited example: the mean l2 distance to its
//! [`TYPICALITY_K`] nearest neighbours of the same class in `g`'s representation of the
//! un-augmented images (rows l2-normalised), among the audited, scored examples. Higher is
//! more atypical; SSLMem finds memorization concentrated on atypical examples
//! (docs/science.md).

use std::collections::BTreeMap;

use ndarray::Array2;
use rayon::prelude::*;

use super::{Item, Record};
use crate::engine::{self, Preprocess};
use crate::error::Result;
use crate::pixels::SourceImage;

/// Neighbours averaged for the typicality measure.
pub const TYPICALITY_K: usize = 10;

/// `g0`'s representations of the examples' un-augmented images (rows l2-normalised), through
/// the engine (an image that is not the model's size is resized, as `embed` does); `None`
/// for examples that could not be read.
fn representations(engine: &engine::Engine, items: &[Item]) -> Result<Vec<Option<Vec<f32>>>> {
    let channels = engine.input().channels;
    if engine.bundle().g.is_empty() {
        return Ok(vec![None; items.len()]);
    }
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(512) {
        let imgs: Vec<Option<SourceImage>> = chunk
            .par_iter()
            .map(|it| it.input.load(channels, Default::default()).ok())
            .collect();
        let ok: Vec<SourceImage> = imgs.iter().flatten().cloned().collect();
        // A row that is not finite (already recorded as a failed score) has no typicality.
        let reps = engine.embed_unchecked(&ok, Preprocess::Resize)?;
        let empty = Array2::zeros((0, 0));
        let g = reps.g.first().unwrap_or(&empty);
        let mut rows = g.rows().into_iter();
        for im in &imgs {
            out.push(im.as_ref().and_then(|_| {
                let r = rows.next()?;
                if r.iter().any(|v| !v.is_finite()) {
                    return None;
                }
                let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                Some(r.iter().map(|v| v / n).collect())
            }));
        }
    }
    Ok(out)
}

/// Typicality of every record: mean l2 distance to its `TYPICALITY_K` nearest neighbours of
/// the same label (all audited, scored examples; unlabelled ones form one group).
pub(super) fn typicality(
    engine: &engine::Engine,
    items: &[Item],
    records: &[Record],
) -> Result<Vec<Option<f64>>> {
    let reps = representations(engine, items)?;
    let mut groups: BTreeMap<Option<u8>, Vec<usize>> = BTreeMap::new();
    for (k, r) in records.iter().enumerate() {
        if r.score.is_some() && reps[k].is_some() {
            groups.entry(r.label).or_default().push(k);
        }
    }
    let mut out = vec![None; records.len()];
    for members in groups.values() {
        if members.len() < 2 {
            continue;
        }
        let k = TYPICALITY_K.min(members.len() - 1);
        let vals: Vec<(usize, f64)> = members
            .par_iter()
            .map(|&a| {
                let ra = reps[a].as_deref().unwrap_or_default();
                let mut d: Vec<f64> = members
                    .iter()
                    .filter(|&&b| b != a)
                    .map(|&b| {
                        let rb = reps[b].as_deref().unwrap_or_default();
                        let s: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
                        f64::from(s).sqrt()
                    })
                    .collect();
                d.select_nth_unstable_by(k - 1, f64::total_cmp);
                (a, d[..k].iter().sum::<f64>() / k as f64)
            })
            .collect();
        for (a, v) in vals {
            out[a] = Some(v);
        }
    }
    Ok(out)
}
