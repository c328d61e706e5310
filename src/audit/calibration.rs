//! The reference population of an audit's one-model scores (`sslmem audit --reference`) and
//! the calibration of every scored example against it (docs/science.md#one-model-scores):
//! the percentile of its alignment under `f` among the reference images', and the gap to its
//! nearest reference images in `f`'s representation ([`crate::score::calibrate`]).
//!
//! The reference is either one of the audited sets (`set:extra`: the split's images neither
//! encoder saw; `set:non-members`: the user's `--non-members`) or inputs (a dataset range, a
//! folder, files) scored as the set `reference` after the others. Either way it must be
//! images `f` did not see, from the audited images' distribution. An example that is itself a
//! reference image is calibrated against the others.

use serde::{Deserialize, Serialize};

use super::{Item, Record, SplitSet, WorkList};
use crate::data::inputs::resolve;
use crate::error::{Error, Result};
use crate::score::calibrate::{Calibrated, Reference};

/// What `--reference` names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceSpec {
    /// One of the audited sets (`set:extra`, `set:non-members`, ...).
    Set(SplitSet),
    /// Inputs, scored as the set `reference`.
    Inputs(Vec<String>),
}

/// The prefix that names an audited set as the reference.
const SET_PREFIX: &str = "set:";

impl ReferenceSpec {
    /// From `--reference`'s words: one `set:NAME` (a set, or `non-members` for `extra`), or
    /// inputs as `sslmem audit` takes them.
    ///
    /// # Errors
    /// [`Error::Param`] for no words, an unknown set, a set `f` was trained on (its images
    /// cannot stand for images `f` did not see), or `set:` among other words.
    pub fn parse(words: &[String]) -> Result<Self> {
        let sets: Vec<&String> = words.iter().filter(|w| w.starts_with(SET_PREFIX)).collect();
        match (words.len(), sets.first()) {
            (0, _) => Err(Error::Param(
                "--reference needs a set (set:extra, set:non-members) or inputs".into(),
            )),
            (1, Some(w)) => {
                let name = &w[SET_PREFIX.len()..];
                let set = if name == "non-members" {
                    SplitSet::Extra
                } else {
                    name.parse::<SplitSet>().map_err(|e| {
                        Error::Param(format!("--reference {w}: {e}; or `set:non-members`"))
                    })?
                };
                if !f_did_not_see(set) {
                    return Err(Error::Param(format!(
                        "--reference {w}: f was trained on the {set} set, so it cannot stand \
                         for images f did not see; name extra (set:extra or set:non-members), \
                         independent or canary-heldout, or inputs"
                    )));
                }
                Ok(Self::Set(set))
            }
            (_, Some(w)) => Err(Error::Param(format!(
                "--reference {w}: name one set, or inputs, not both"
            ))),
            (_, None) => Ok(Self::Inputs(words.to_vec())),
        }
    }

    /// The words that give this reference back to [`ReferenceSpec::parse`].
    pub fn words(&self) -> Vec<String> {
        match self {
            Self::Set(s) => vec![format!("{SET_PREFIX}{s}")],
            Self::Inputs(v) => v.clone(),
        }
    }

    /// The set whose records are the reference.
    pub fn set(&self) -> SplitSet {
        match self {
            Self::Set(s) => *s,
            Self::Inputs(_) => SplitSet::Reference,
        }
    }
}

impl std::fmt::Display for ReferenceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set(s) => write!(f, "the audited set {s}"),
            Self::Inputs(v) => write!(f, "{}", v.join(" ")),
        }
    }
}

/// Sets whose images `f` did not see (by the split's design, or the user's word).
fn f_did_not_see(set: SplitSet) -> bool {
    matches!(
        set,
        SplitSet::Extra
            | SplitSet::Independent
            | SplitSet::CanaryHeldout
            | SplitSet::CanaryIndependent
            | SplitSet::Reference
    )
}

/// Adds the reference inputs to the end of the work list (the first `limit`), or checks that
/// the named set is audited.
///
/// # Errors
/// [`Error::Param`] when the named set is not audited or the inputs hold no image.
pub(super) fn add_reference(
    work: &mut WorkList,
    spec: &ReferenceSpec,
    limit: Option<usize>,
) -> Result<()> {
    match spec {
        ReferenceSpec::Set(set) => {
            let audited = work.items.iter().any(|it| it.set == *set);
            if !audited {
                return Err(Error::Param(format!(
                    "--reference {SET_PREFIX}{set}: the audit has no {set} set; audit it \
                     (--sets, --non-members) or name inputs"
                )));
            }
        }
        ReferenceSpec::Inputs(inputs) => {
            let resolved =
                resolve(inputs).map_err(|e| Error::Param(format!("--reference: {e}")))?;
            if resolved.is_empty() {
                return Err(Error::Param(format!(
                    "--reference {}: no images found",
                    inputs.join(" ")
                )));
            }
            work.items.extend(
                resolved
                    .into_iter()
                    .take(limit.unwrap_or(usize::MAX))
                    .enumerate()
                    .map(|(index, input)| Item {
                        set: SplitSet::Reference,
                        index,
                        input,
                    }),
            );
        }
    }
    Ok(())
}

/// Each record's calibration against the reference (`None` for records not scored), from
/// the records' alignments under `f` and `f`'s representations `f_reps` (one per record).
/// The reference is the records of `spec`'s set; `knn` neighbours for `knn_gap`.
pub(super) fn calibrate(
    records: &[Record],
    f_reps: &[Option<Vec<f32>>],
    spec: &ReferenceSpec,
    knn: usize,
) -> Vec<Option<Calibrated>> {
    let set = spec.set();
    let reference = Reference::new(records.iter().zip(f_reps).filter_map(|(r, rep)| {
        if r.set != set {
            return None;
        }
        Some((r.input.as_str(), r.align_f()?, rep.as_deref()?))
    }));
    if reference.len() < 2 {
        tracing::warn!(
            images = reference.len(),
            "the reference population ({spec}) has fewer than 2 scored images: no calibrated \
             one-model scores"
        );
    }
    records
        .iter()
        .zip(f_reps)
        .map(|(r, rep)| {
            let a = r.align_f()?;
            Some(reference.calibrate(&r.input, a, rep.as_deref(), knn))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reference_words_parse_to_sets_or_inputs_and_back() {
        let r = ReferenceSpec::parse(&words(&["set:extra"])).expect("set");
        assert_eq!(r, ReferenceSpec::Set(SplitSet::Extra));
        assert_eq!(r.words(), words(&["set:extra"]));
        assert_eq!(
            ReferenceSpec::parse(&words(&["set:non-members"])).expect("set"),
            ReferenceSpec::Set(SplitSet::Extra)
        );
        let r = ReferenceSpec::parse(&words(&["mnist:test[0..100]", "dir/"])).expect("inputs");
        assert_eq!(r.set(), SplitSet::Reference);
        assert_eq!(ReferenceSpec::parse(&r.words()).expect("again"), r);
        for bad in [
            &["set:candidate"][..],
            &["set:shared"],
            &["set:nonsense"],
            &["set:extra", "x.png"],
            &[],
        ] {
            assert!(ReferenceSpec::parse(&words(bad)).is_err(), "{bad:?}");
        }
    }
}
