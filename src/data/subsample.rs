//! The membership design of the many-model (subsampling) estimator (Feldman & Zhang 2020,
//! arXiv:2008.03703): `M` encoders, each trained on a random half of a pool of `size`
//! training examples, so that every example is scored by the encoders that saw it against
//! those that did not.
//!
//! Encoders come in complementary pairs. Encoder `i` belongs to split `j = i / 2`; split `j`
//! is a random permutation of `0..size` drawn from `(seed, j)` ([`permutation`]); encoder `2j`
//! trains on its first `size / 2` indices and encoder `2j + 1` on the other
//! `size - size / 2`. Every example is therefore in exactly one encoder of each pair, in `M / 2`
//! encoders in all, and the `M / 2` splits are independent draws. `M` must be even and at
//! least 2.
//!
//! The record ([`SubsampleRecord`]) is the manifest's `subsample`: which examples of the pool
//! each encoder of `f` trained on.

use serde::{Deserialize, Serialize};

use super::split::IndexSet;
use crate::error::{Error, Result};
use crate::rng::{splitmix64, Rng};

/// Mixed into the seed of every split's permutation ("SUBSMP"), so that the permutations
/// differ from other draws made from the same seed (the practical split's, the training's).
const TAG: u64 = 0x5355_4253_4D50;

/// Which examples of the pool each encoder trained on: the manifest's `subsample` record of a
/// many-model bundle, whose `f` lists the `M` encoders (`g` is empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsampleRecord {
    /// The dataset as given to `--dataset`, e.g. `fashion-mnist`.
    pub dataset: String,
    /// Examples in the pool: the training subset used (`--subset`, or the whole training
    /// set); member indices lie in `0..size`.
    pub size: usize,
    /// The seed the splits were drawn from ([`members`]).
    pub seed: u64,
    /// One set per encoder, in the manifest's `f` order: the pool indices it trained on.
    pub members: Vec<IndexSet>,
    /// SHA-256 of the images the pool indices name (`dataset::data_sha256`); absent in
    /// records made before 2026-12-07.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
}

/// Checks that `models` (`M`) is even and at least 2.
///
/// Errors: [`Error::Param`] naming `--models` otherwise.
pub fn check_models(models: usize) -> Result<()> {
    if models < 2 || !models.is_multiple_of(2) {
        return Err(Error::Param(format!(
            "--models is {models}; the subsampling design trains encoders in complementary \
             pairs (each on one half of a random split of the pool), so it must be even and \
             at least 2"
        )));
    }
    Ok(())
}

/// Split `j`'s permutation of `0..size`: Fisher–Yates (as [`crate::data::split::SplitRecord::make`]
/// shuffles) driven by `Rng::from_seed(splitmix64(seed ^ TAG) ^ splitmix64(j))`, `TAG` being
/// `0x5355_4253_4D50` ("SUBSMP").
pub fn permutation(size: usize, seed: u64, split: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..size).collect();
    let mut rng = Rng::from_seed(splitmix64(seed ^ TAG) ^ splitmix64(split as u64));
    for i in (1..size).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The training sets of `models` encoders over a pool of `size` examples, in encoder order:
/// encoder `2j` gets the first `size / 2` indices of split `j`'s [`permutation`], encoder
/// `2j + 1` the remaining `size - size / 2`.
///
/// Errors: [`Error::Param`] when `models` is odd or below 2, or `size` is below 2 (a half
/// would be empty).
pub fn members(size: usize, seed: u64, models: usize) -> Result<Vec<IndexSet>> {
    check_models(models)?;
    if size < 2 {
        return Err(Error::Param(format!(
            "the pool has {size} examples; the subsampling design needs at least 2"
        )));
    }
    let half = size / 2;
    let mut out = Vec::with_capacity(models);
    for j in 0..models / 2 {
        let order = permutation(size, seed, j);
        let (first, rest) = order.split_at(half);
        out.push(IndexSet::from_indices(first.to_vec()));
        out.push(IndexSet::from_indices(rest.to_vec()));
    }
    Ok(out)
}

impl SubsampleRecord {
    /// The record of `models` encoders over `size` examples of `dataset` ([`members`]).
    ///
    /// Errors: as [`members`].
    pub fn make(dataset: &str, size: usize, seed: u64, models: usize) -> Result<Self> {
        Ok(Self {
            dataset: dataset.into(),
            size,
            seed,
            members: members(size, seed, models)?,
            data_sha256: None,
        })
    }

    /// Checks the record against a bundle of `encoders` encoders: one member set per
    /// encoder, an even number of them (at least 2), every set's ranges sorted, disjoint and
    /// within `0..size`, encoder `2j` holding `size / 2` examples and `2j + 1` the other
    /// `size - size / 2`, each pair disjoint (so it covers the pool).
    ///
    /// Errors: [`Error::Param`] saying which of these fails.
    pub fn validate(&self, encoders: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Param(format!("subsample: {m}")));
        if self.members.len() != encoders {
            return bad(format!(
                "{} member sets for {encoders} encoders; there must be one per encoder of `f`",
                self.members.len()
            ));
        }
        if check_models(encoders).is_err() {
            return bad(format!(
                "{encoders} encoders; the design needs an even number, at least 2"
            ));
        }
        let half = self.size / 2;
        for (i, set) in self.members.iter().enumerate() {
            set.validate(self.size)
                .map_err(|e| Error::Param(format!("subsample: encoder {i}'s members: {e}")))?;
            let want = if i % 2 == 0 { half } else { self.size - half };
            if set.len() != want {
                return bad(format!(
                    "encoder {i} has {} members; encoder {} of a pool of {} must have {want}",
                    set.len(),
                    if i % 2 == 0 { "2j" } else { "2j + 1" },
                    self.size
                ));
            }
        }
        for j in 0..encoders / 2 {
            let (a, b) = (&self.members[2 * j], &self.members[2 * j + 1]);
            if let Some(k) = a.iter().find(|&k| b.contains(k)) {
                return bad(format!(
                    "encoders {} and {} both hold example {k}; a pair must split the pool \
                     into two disjoint halves",
                    2 * j,
                    2 * j + 1
                ));
            }
        }
        Ok(())
    }

    /// Whether encoder `encoder` trained on pool example `index` (false for an encoder or an
    /// index outside the record).
    pub fn is_member(&self, encoder: usize, index: usize) -> bool {
        self.members
            .get(encoder)
            .is_some_and(|set| set.contains(index))
    }

    /// The encoders that trained on pool example `index`, in encoder order.
    pub fn encoders_with(&self, index: usize) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.is_member(i, index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoder_holds_half_and_pairs_split_the_pool() {
        for size in [2usize, 7, 100, 1001] {
            let m = members(size, 3, 6).expect("members");
            assert_eq!(m.len(), 6);
            for j in 0..3 {
                let (a, b) = (&m[2 * j], &m[2 * j + 1]);
                assert_eq!(a.len(), size / 2, "size {size}, split {j}");
                assert_eq!(b.len(), size - size / 2);
                for k in 0..size {
                    assert!(a.contains(k) != b.contains(k), "size {size}: example {k}");
                }
            }
        }
    }

    #[test]
    fn each_example_is_in_exactly_half_of_the_encoders() {
        let r = SubsampleRecord::make("fashion-mnist", 500, 11, 8).expect("record");
        r.validate(8).expect("valid");
        for k in 0..500 {
            assert_eq!(r.encoders_with(k).len(), 4, "example {k}");
        }
    }

    #[test]
    fn splits_differ_and_seeds_reproduce() {
        let a = members(1000, 0, 6).expect("a");
        assert_ne!(a[0], a[2]);
        assert_ne!(a[2], a[4]);
        assert_ne!(a[0], a[4]);
        assert_eq!(a, members(1000, 0, 6).expect("again"));
        // More encoders extend the design: the first splits stay the same.
        assert_eq!(a[..4], members(1000, 0, 4).expect("fewer")[..]);
        assert_ne!(a, members(1000, 1, 6).expect("another seed"));
    }

    #[test]
    fn odd_or_too_few_models_are_refused() {
        for m in [0, 1, 3, 5] {
            let e = members(10, 0, m).expect_err("odd").to_string();
            assert!(e.contains("--models") && e.contains("even"), "{e}");
        }
        assert!(members(1, 0, 2).is_err());
    }

    #[test]
    fn is_member_matches_the_sets() {
        let r = SubsampleRecord::make("d", 20, 5, 2).expect("record");
        for k in 0..20 {
            assert_eq!(r.is_member(0, k), r.members[0].contains(k));
            assert_eq!(r.is_member(0, k), !r.is_member(1, k));
        }
        assert!(!r.is_member(2, 0), "no third encoder");
        assert!(!r.is_member(0, 20), "outside the pool");
    }

    #[test]
    fn validate_names_what_is_wrong() {
        let r = SubsampleRecord::make("d", 10, 0, 4).expect("record");
        let err = |r: &SubsampleRecord, n: usize| r.validate(n).expect_err("bad").to_string();
        assert!(err(&r, 6).contains("one per encoder"));
        let mut odd = r.clone();
        odd.members.pop();
        assert!(err(&odd, 3).contains("even"));
        let mut overlap = r.clone();
        overlap.members[1] = overlap.members[0].clone();
        assert!(err(&overlap, 4).contains("both hold"));
        let mut short = r.clone();
        short.members[2] = IndexSet::range(0, 4);
        assert!(err(&short, 4).contains("must have 5"));
        let mut out = r.clone();
        out.members[3] = IndexSet::range(6, 11);
        assert!(err(&out, 4).contains("within 0..10"));
        // The JSON round trip keeps it valid.
        let back: SubsampleRecord =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("read");
        assert_eq!(back, r);
        back.validate(4).expect("valid");
    }
}
