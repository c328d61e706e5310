//! The typicality of each audited example: the mean l2 distance to its
//! [`TYPICALITY_K`] nearest neighbours of the same class in `g`'s representation of the
//! un-augmented images (rows l2-normalised; `f`'s for a one-model bundle, which has no `g`),
//! among the audited, scored examples. Higher is more atypical; SSLMem finds memorization
//! concentrated on atypical examples (docs/science.md).
//!
//! The same pass gives `f`'s representations, which the one-model calibration's neighbours
//! are found in ([`super::calibration`]).

use std::collections::BTreeMap;

use ndarray::Array2;
use rayon::prelude::*;

use super::{Item, Record, SplitSet};
use crate::engine::{self, Preprocess};
use crate::error::Result;
use crate::pixels::SourceImage;

/// Neighbours averaged for the typicality measure.
pub const TYPICALITY_K: usize = 10;

/// The first `f` and `g` encoders' representations of each example's un-augmented image
/// (rows l2-normalised), `None` for examples that could not be read or whose row is not
/// finite; `g` is all `None` for a one-model bundle.
pub(super) struct Embeddings {
    pub f: Vec<Option<Vec<f32>>>,
    pub g: Vec<Option<Vec<f32>>>,
}

impl Embeddings {
    /// The side typicality is measured in: `g`, or `f` for a one-model bundle.
    pub fn typicality_side(&self, one_model: bool) -> &[Option<Vec<f32>>] {
        if one_model {
            &self.f
        } else {
            &self.g
        }
    }
}

/// Embeds every example through the engine (an image that is not the model's size is
/// resized, as `embed` does).
pub(super) fn embeddings(engine: &engine::Engine, items: &[Item]) -> Result<Embeddings> {
    let channels = engine.input().channels;
    let mut out = Embeddings {
        f: Vec::with_capacity(items.len()),
        g: Vec::with_capacity(items.len()),
    };
    for chunk in items.chunks(512) {
        let imgs: Vec<Option<SourceImage>> = chunk
            .par_iter()
            .map(|it| it.input.load(channels, Default::default()).ok())
            .collect();
        let ok: Vec<SourceImage> = imgs.iter().flatten().cloned().collect();
        // A row that is not finite (already recorded as a failed score) has no embedding.
        let reps = engine.embed_unchecked(&ok, Preprocess::Resize)?;
        let empty = Array2::zeros((0, 0));
        for (side, dst) in [(&reps.f, &mut out.f), (&reps.g, &mut out.g)] {
            let m = side.first().unwrap_or(&empty);
            let mut rows = m.rows().into_iter();
            for im in &imgs {
                dst.push(im.as_ref().and_then(|_| {
                    let r = rows.next()?;
                    if r.iter().any(|v| !v.is_finite()) {
                        return None;
                    }
                    let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    Some(r.iter().map(|v| v / n).collect())
                }));
            }
        }
    }
    Ok(out)
}

/// Typicality of every record: mean l2 distance to its `TYPICALITY_K` nearest neighbours of
/// the same label (all audited, scored examples; unlabelled ones form one group).
pub(super) fn typicality(reps: &[Option<Vec<f32>>], records: &[Record]) -> Vec<Option<f64>> {
    let mut groups: BTreeMap<Option<u8>, Vec<usize>> = BTreeMap::new();
    for (k, r) in records.iter().enumerate() {
        if r.scored() && r.set != SplitSet::Reference && reps[k].is_some() {
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
    out
}
