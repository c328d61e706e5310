//! The audit of a many-model bundle (`sslmem-train subsample`: `M` encoders in `f`, each
//! trained on half of a pool, recorded in the manifest's `subsample`;
//! docs/science.md#the-many-model-estimator). Every pool image is scored, as the set `pool`,
//! by the SSLMem estimator with the encoders that trained on it in the place of `f` and those
//! that did not in the place of `g` ([`crate::score::subsample_scores`]), and each encoder is
//! evaluated as a membership test of its own training set, the others as its reference
//! (leave one encoder out).

use serde::{Deserialize, Serialize};

use super::{Item, Record, SplitSet, WorkList};
use crate::bundle::Bundle;
use crate::data::dataset;
use crate::data::inputs::Input;
use crate::data::subsample::SubsampleRecord;
use crate::error::{Error, Result};
use crate::membership::{evaluate, Membership};
use crate::stats::describe;
use crate::stats::Spread;
use std::sync::Arc;

/// The pool's images in index order (the first `limit`), as the set `pool`.
///
/// # Errors
/// [`Error::Param`] when the dataset's training subset is not the pool the record was made
/// for, or sets were asked for (a many-model bundle has only its pool).
pub(super) fn work_list(
    bundle: &Bundle,
    rec: &SubsampleRecord,
    dataset_override: Option<&str>,
    sets: &[SplitSet],
    limit: usize,
) -> Result<WorkList> {
    if sets != [SplitSet::Pool] {
        return Err(Error::Param(
            "a many-model bundle (sslmem-train subsample) has no split sets: its audit scores \
             every pool image as the set `pool`; leave out --sets"
                .into(),
        ));
    }
    let m = &bundle.manifest;
    let spec = dataset_override.unwrap_or(&rec.dataset).to_string();
    let i = &m.input;
    let tt = dataset::load(
        &spec,
        Some([i.channels, i.height, i.width]),
        m.training_subset(),
    )?;
    if tt.train.len() != rec.size {
        return Err(Error::Param(format!(
            "{spec} has {} training examples but the bundle's pool has {}; is --dataset the \
             one the encoders were trained on?",
            tt.train.len(),
            rec.size
        )));
    }
    dataset::check_recorded_data(&spec, rec.data_sha256.as_deref(), &tt)?;
    let train = Arc::new(tt.train);
    let items = (0..rec.size.min(limit))
        .map(|index| Item {
            set: SplitSet::Pool,
            index,
            input: Input::example(
                format!("{}:train#{index}", rec.dataset),
                train.clone(),
                index,
            ),
        })
        .collect();
    Ok(WorkList {
        items,
        dataset: Some(spec),
        sets: vec![SplitSet::Pool],
        classes: tt.classes,
    })
}

/// For each item, whether each encoder trained on it: `[items][encoders]`.
pub(super) fn member_rows(rec: &SubsampleRecord, items: &[&Item]) -> Vec<Vec<bool>> {
    items
        .iter()
        .map(|it| {
            (0..rec.members.len())
                .map(|e| rec.is_member(e, it.index))
                .collect()
        })
        .collect()
}

/// `summary.json`'s `many_model`: the design, the intervals' widths and the per-encoder
/// membership tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManyModelSummary {
    /// Encoders (`M`).
    pub models: usize,
    /// Pool images scored.
    pub scored: usize,
    /// Width of each image's 95% interval of the score (high minus low, over the view pairs).
    pub interval_width: Option<Spread>,
    /// Mean of the encoders' leave-one-out AUCs.
    pub mean_auc: Option<f64>,
    /// Each encoder as a membership test of its own training set: members are the pool images
    /// it trained on, non-members the others; an image's signal is its mean alignment under
    /// the other encoders that did not train on it minus under this encoder.
    pub per_encoder: Vec<EncoderEval>,
}

/// One encoder's leave-one-out membership test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderEval {
    /// Its position in the manifest's `f`.
    pub encoder: usize,
    /// `members` and `non_members` are both `pool`: its training half and the rest.
    #[serde(flatten)]
    pub membership: Membership,
}

/// The leave-one-out signal of encoder `e` for a record: the mean alignment under the other
/// encoders that did not train on it, minus under `e`; `None` when no other encoder left it
/// out or it has no per-encoder alignments.
pub fn loo_signal(rec: &SubsampleRecord, r: &Record, e: usize) -> Option<f64> {
    let per = r.per_encoder.as_ref()?;
    let others: Vec<f64> = (0..per.len())
        .filter(|&j| j != e && !rec.is_member(j, r.index))
        .map(|j| per[j])
        .collect();
    if others.is_empty() {
        return None;
    }
    let v = others.iter().sum::<f64>() / others.len() as f64 - per.get(e)?;
    v.is_finite().then_some(v)
}

/// The many-model summary of the pool's records; the bootstrap is seeded from `seed`.
pub fn summarize(rec: &SubsampleRecord, records: &[Record], seed: u64) -> ManyModelSummary {
    let pool: Vec<&Record> = records
        .iter()
        .filter(|r| r.set == SplitSet::Pool && r.score.is_some())
        .collect();
    let widths: Vec<f64> = pool
        .iter()
        .filter_map(|r| r.score.as_ref()?.ci95.map(|c| c[1] - c[0]))
        .filter(|w| w.is_finite())
        .collect();
    let per_encoder: Vec<EncoderEval> = (0..rec.members.len())
        .filter_map(|e| {
            let (mut m, mut n) = (Vec::new(), Vec::new());
            for r in &pool {
                if let Some(v) = loo_signal(rec, r, e) {
                    if rec.is_member(e, r.index) {
                        m.push(v);
                    } else {
                        n.push(v);
                    }
                }
            }
            let membership = evaluate(SplitSet::Pool, &m, SplitSet::Pool, &n, seed)?;
            Some(EncoderEval {
                encoder: e,
                membership,
            })
        })
        .collect();
    let mean_auc = (!per_encoder.is_empty()).then(|| {
        per_encoder.iter().map(|e| e.membership.auc).sum::<f64>() / per_encoder.len() as f64
    });
    ManyModelSummary {
        models: rec.members.len(),
        scored: pool.len(),
        interval_width: describe(&widths).map(Spread::from),
        mean_auc,
        per_encoder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::estimate;

    fn rec(index: usize, per_encoder: Vec<f64>) -> Record {
        Record {
            set: SplitSet::Pool,
            index,
            input: format!("d#{index}"),
            label: None,
            score: Some(estimate(&[0.1, 0.2], &[0.3, 0.5])),
            alignment: None,
            per_encoder: Some(per_encoder),
            error: None,
        }
    }

    #[test]
    fn the_leave_one_out_signal_uses_the_other_encoders_that_left_the_image_out() {
        let design = SubsampleRecord::make("d", 8, 3, 4).expect("design");
        // Image 0's alignment under encoders 0..4.
        let r = rec(0, vec![0.1, 0.2, 0.4, 0.8]);
        for e in 0..4 {
            let others: Vec<f64> = (0..4)
                .filter(|&j| j != e && !design.is_member(j, 0))
                .map(|j| r.per_encoder.as_ref().expect("per")[j])
                .collect();
            let want = others.iter().sum::<f64>() / others.len() as f64
                - r.per_encoder.as_ref().expect("per")[e];
            let got = loo_signal(&design, &r, e).expect("signal");
            assert!((got - want).abs() < 1e-12, "encoder {e}");
            // The complementary partner of e always left the image out when e saw it.
            assert!(!others.is_empty());
        }
    }

    #[test]
    fn each_encoder_is_evaluated_on_its_own_members_and_non_members() {
        let records = |design: &SubsampleRecord| -> Vec<Record> {
            // Encoder e aligns its members at 0.1 and the rest at 0.5: a perfect test each.
            (0..40)
                .map(|i| {
                    let per = (0..design.members.len())
                        .map(|e| if design.is_member(e, i) { 0.1 } else { 0.5 })
                        .collect();
                    rec(i, per)
                })
                .collect()
        };
        // With M = 2 an image an encoder did not see was seen by the only other one: no
        // reference for the non-members, so no leave-one-out test.
        let two = SubsampleRecord::make("d", 40, 1, 2).expect("design");
        assert!(summarize(&two, &records(&two), 0).per_encoder.is_empty());
        let design = SubsampleRecord::make("d", 40, 1, 4).expect("design");
        let s = summarize(&design, &records(&design), 0);
        assert_eq!((s.models, s.scored, s.per_encoder.len()), (4, 40, 4));
        for e in &s.per_encoder {
            assert_eq!(e.membership.auc, 1.0);
            assert_eq!(e.membership.n_members + e.membership.n_non_members, 40);
            assert_eq!(e.membership.n_members, 20);
        }
        assert_eq!(s.mean_auc, Some(1.0));
        let w = s.interval_width.expect("widths");
        assert!(w.mean > 0.0);
    }
}
