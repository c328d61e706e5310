//! The practical split (docs/science.md#the-split): the training set is shuffled from a seed
//! and cut into `shared` (80%), `candidate` (10%) and `independent` (10%); `extra` is data
//! neither encoder sees (by default the test set). `f` trains on shared ∪ candidate, `g` on
//! shared ∪ independent. Index sets are stored compactly as `[start, end)` ranges.

use serde::{Deserialize, Serialize};

use super::canary::CanarySpec;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// A set of examples an audit scores, as every record names it: the sets of docs/science.md#the-split
/// (`candidate`, seen by `f` only; `shared`, seen by both; `independent`, seen by `g` only;
/// `extra`, seen by neither), then the canary sets of a bundle trained with `--canaries`, in
/// the order they are scored and reported (the order of `Ord`); last `inputs`, the examples
/// of an audit of given inputs, which is not a set of the split (so no `--sets` value).
/// Written in kebab-case (`canary-candidate`), as [`SplitSet::name`] spells it, in JSON, CSV
/// and on the command line.
///
/// The four split sets carry no doc comments of their own: `--help` lists them bare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SplitSet {
    Candidate,
    Shared,
    Independent,
    Extra,
    /// Canaries seen by `f` only.
    CanaryCandidate,
    /// Canaries seen by `g` only.
    CanaryIndependent,
    /// Canaries seen by neither.
    CanaryHeldout,
    /// The inputs of an audit of given files, folders or datasets.
    Inputs,
    /// The reference population of one-model scores (`sslmem audit --reference`): images
    /// from the audited images' distribution that `f` did not see.
    Reference,
    /// Every image of a many-model bundle's pool (`sslmem-train subsample`), each seen by half
    /// of the encoders.
    Pool,
}

crate::choice!(SplitSet, "set", {
    Candidate = "candidate",
    Shared = "shared",
    Independent = "independent",
    Extra = "extra",
    CanaryCandidate = "canary-candidate" => "Canaries seen by `f` only.",
    CanaryIndependent = "canary-independent" => "Canaries seen by `g` only.",
    CanaryHeldout = "canary-heldout" => "Canaries seen by neither.",
} hidden: { Inputs = "inputs", Reference = "reference", Pool = "pool" });

impl SplitSet {
    /// The sets of a split, canaries included, in order (not [`SplitSet::Inputs`]).
    pub const ALL: [SplitSet; 7] = [
        SplitSet::Candidate,
        SplitSet::Shared,
        SplitSet::Independent,
        SplitSet::Extra,
        SplitSet::CanaryCandidate,
        SplitSet::CanaryIndependent,
        SplitSet::CanaryHeldout,
    ];

    /// The set's name, as records and the command line write it (`canary-heldout`).
    pub fn name(self) -> &'static str {
        crate::choice::Choice::name(self)
    }

    /// The `sslmem audit` flag that names this set's images when the user brings their own
    /// sets: `members` (seen by `f` only: `candidate`), `non-members` (seen by neither:
    /// `extra`), `shared`, `independent`; the set's own name for the others.
    pub fn member_flag(self) -> &'static str {
        match self {
            SplitSet::Candidate => "members",
            SplitSet::Extra => "non-members",
            other => other.name(),
        }
    }

    /// Whether the user may name this set's images (`--members` and the like): the four sets
    /// of a split, not canaries or `inputs`.
    pub fn member_flag_allowed(self) -> bool {
        matches!(
            self,
            SplitSet::Candidate | SplitSet::Shared | SplitSet::Independent | SplitSet::Extra
        )
    }

    /// Whether this is one of the canary sets.
    pub fn is_canary(self) -> bool {
        matches!(
            self,
            SplitSet::CanaryCandidate | SplitSet::CanaryIndependent | SplitSet::CanaryHeldout
        )
    }
}

/// Fractions of the training set; `shared` takes the rest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub seed: u64,
    pub candidate: f64,
    pub independent: f64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            candidate: 0.1,
            independent: 0.1,
        }
    }
}

/// A set of example indices as sorted, disjoint `[start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IndexSet {
    pub ranges: Vec<[usize; 2]>,
}

impl IndexSet {
    /// From any indices (sorted and merged into ranges; duplicates collapse).
    pub fn from_indices(mut idx: Vec<usize>) -> Self {
        idx.sort_unstable();
        idx.dedup();
        let mut ranges: Vec<[usize; 2]> = Vec::new();
        for i in idx {
            match ranges.last_mut() {
                Some(r) if r[1] == i => r[1] = i + 1,
                _ => ranges.push([i, i + 1]),
            }
        }
        Self { ranges }
    }

    pub fn range(start: usize, end: usize) -> Self {
        Self {
            ranges: if start < end {
                vec![[start, end]]
            } else {
                Vec::new()
            },
        }
    }

    /// Indices in the set. An inverted range (which [`IndexSet::validate`] refuses, but a
    /// manifest may hold) counts as empty.
    pub fn len(&self) -> usize {
        self.ranges.iter().map(|r| r[1].saturating_sub(r[0])).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, i: usize) -> bool {
        // Ranges are sorted: binary search on the start.
        let pos = self.ranges.partition_point(|r| r[0] <= i);
        pos > 0 && i < self.ranges[pos - 1][1]
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|r| r[0]..r[1])
    }

    /// Checks that the ranges are sorted, non-empty and disjoint, and end by `n`.
    pub fn validate(&self, n: usize) -> Result<()> {
        let mut prev = 0;
        for (k, r) in self.ranges.iter().enumerate() {
            if r[0] >= r[1] || (k > 0 && r[0] < prev) || r[1] > n {
                return Err(Error::Param(format!(
                    "index ranges {:?} are not sorted, disjoint and within 0..{n}",
                    self.ranges
                )));
            }
            prev = r[1];
        }
        Ok(())
    }
}

/// The stored split record: the manifest's `split` and the trainer's `split.json`.
///
/// `dataset`, `size` and the three training sets are required; `spec`, `extra_dataset` and
/// `extra` default to the default spec and to no extra set when missing, `canaries` to none.
/// Fields this version does not know are kept in `other`, so a record read and written back
/// loses nothing. [`SplitRecord::validate`] checks that the sets fit together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// The training dataset, e.g. `fashion-mnist:train`.
    pub dataset: String,
    /// Examples in the training dataset.
    pub size: usize,
    #[serde(default)]
    pub spec: SplitSpec,
    pub shared: IndexSet,
    pub candidate: IndexSet,
    pub independent: IndexSet,
    /// Data neither encoder saw, e.g. `fashion-mnist:test`, and which of its examples.
    #[serde(default)]
    pub extra_dataset: String,
    #[serde(default)]
    pub extra: IndexSet,
    /// Planted canaries (`--canaries`), absent in bundles without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries: Option<CanaryRecord>,
    /// SHA-256 of the images the indices name, as the trainer loaded them (see
    /// `dataset::data_sha256`); absent in records made before 2026-12-07 and in records not
    /// made by the trainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
    /// Fields this version does not know, written back as they were read (after the known
    /// ones).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The canaries of a run: how they were made, where the bundle stores them, and which set
/// each belongs to. Index sets point into `files`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    pub spec: CanarySpec,
    /// PNG files, relative to the bundle folder, with their SHA-256: `[candidate |
    /// independent | held-out]`.
    pub files: Vec<CanaryFile>,
    /// Seen by `f` only.
    pub candidate: IndexSet,
    /// Seen by `g` only.
    pub independent: IndexSet,
    /// Seen by neither.
    pub heldout: IndexSet,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryFile {
    pub path: String,
    pub sha256: String,
}

impl CanaryRecord {
    /// Checks the index sets against the file list.
    pub fn validate(&self) -> Result<()> {
        let n = self.files.len();
        for s in [&self.candidate, &self.independent, &self.heldout] {
            s.validate(n)?;
        }
        if self.candidate.len() + self.independent.len() + self.heldout.len() != n {
            return Err(Error::Param(format!(
                "canary sets must cover the {n} canary files exactly once"
            )));
        }
        Ok(())
    }
}

impl SplitRecord {
    /// Shuffles `0..size` from the seed and cuts it; sizes are rounded, shared takes the rest.
    pub fn make(
        dataset: &str,
        size: usize,
        spec: SplitSpec,
        extra_dataset: &str,
        extra_size: usize,
    ) -> Result<Self> {
        let ok = |f: f64| (0.0..1.0).contains(&f);
        if !ok(spec.candidate) || !ok(spec.independent) || spec.candidate + spec.independent >= 1.0
        {
            return Err(Error::Param(format!(
                "candidate ({}) and independent ({}) fractions must be in [0, 1) and leave room for shared",
                spec.candidate, spec.independent
            )));
        }
        let order = shuffled_order(spec.seed, size);
        let n_c = (size as f64 * spec.candidate).round() as usize;
        let n_i = (size as f64 * spec.independent).round() as usize;
        let (cand, rest) = order.split_at(n_c);
        let (indep, shared) = rest.split_at(n_i);
        Ok(Self {
            dataset: dataset.into(),
            size,
            spec,
            shared: IndexSet::from_indices(shared.to_vec()),
            candidate: IndexSet::from_indices(cand.to_vec()),
            independent: IndexSet::from_indices(indep.to_vec()),
            extra_dataset: extra_dataset.into(),
            extra: IndexSet::range(0, extra_size),
            canaries: None,
            data_sha256: None,
            other: serde_json::Map::new(),
        })
    }

    /// Which training set (candidate, independent or shared) an index of the training
    /// dataset belongs to; `None` outside the split.
    pub fn set_of(&self, i: usize) -> Option<SplitSet> {
        if self.candidate.contains(i) {
            Some(SplitSet::Candidate)
        } else if self.independent.contains(i) {
            Some(SplitSet::Independent)
        } else if self.shared.contains(i) {
            Some(SplitSet::Shared)
        } else {
            None
        }
    }

    /// f's training indices: shared ∪ candidate, sorted.
    pub fn f_train(&self) -> Vec<usize> {
        merge(&self.shared, &self.candidate)
    }

    /// g's training indices: shared ∪ independent, sorted.
    pub fn g_train(&self) -> Vec<usize> {
        merge(&self.shared, &self.independent)
    }

    /// Checks a split read from a manifest: valid ranges, disjoint sets covering the data.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.canaries {
            c.validate()?;
        }
        for s in [&self.shared, &self.candidate, &self.independent] {
            s.validate(self.size)?;
        }
        if self.shared.len() + self.candidate.len() + self.independent.len() != self.size
            || (0..self.size).any(|i| {
                [&self.shared, &self.candidate, &self.independent]
                    .iter()
                    .filter(|s| s.contains(i))
                    .count()
                    != 1
            })
        {
            return Err(Error::Param(format!(
                "split sets of {} must be disjoint and cover all {} examples",
                self.dataset, self.size
            )));
        }
        Ok(())
    }
}

/// `0..size` in the seeded order a split cuts (a Fisher–Yates shuffle from
/// `seed ^ "SPLIT"`): [`SplitRecord::make`]'s sets are its consecutive runs.
pub fn shuffled_order(seed: u64, size: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..size).collect();
    let mut rng = Rng::from_seed(seed ^ 0x0053_504C_4954);
    for i in (1..size).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

fn merge(a: &IndexSet, b: &IndexSet) -> Vec<usize> {
    let mut v: Vec<usize> = a.iter().chain(b.iter()).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_disjoint_cover_everything_and_have_the_right_sizes() {
        let s = SplitRecord::make("d", 1003, SplitSpec::default(), "t", 17).expect("split");
        s.validate().expect("valid");
        assert_eq!(
            (s.candidate.len(), s.independent.len(), s.shared.len()),
            (100, 100, 803)
        );
        assert_eq!(s.extra.len(), 17);
        let f = s.f_train();
        let g = s.g_train();
        assert_eq!((f.len(), g.len()), (903, 903));
        assert!(s
            .candidate
            .iter()
            .all(|i| f.binary_search(&i).is_ok() && g.binary_search(&i).is_err()));
        assert!(s
            .independent
            .iter()
            .all(|i| g.binary_search(&i).is_ok() && f.binary_search(&i).is_err()));
        assert_eq!(
            s.set_of(s.candidate.ranges[0][0]),
            Some(SplitSet::Candidate)
        );
        assert_eq!(s.set_of(5000), None);
    }

    #[test]
    fn splits_are_deterministic_per_seed_and_survive_json() {
        let a = SplitRecord::make(
            "d",
            500,
            SplitSpec {
                seed: 3,
                ..SplitSpec::default()
            },
            "t",
            0,
        )
        .expect("split");
        let b = SplitRecord::make(
            "d",
            500,
            SplitSpec {
                seed: 3,
                ..SplitSpec::default()
            },
            "t",
            0,
        )
        .expect("split");
        let c = SplitRecord::make(
            "d",
            500,
            SplitSpec {
                seed: 4,
                ..SplitSpec::default()
            },
            "t",
            0,
        )
        .expect("split");
        assert_eq!(a, b);
        assert_ne!(a.candidate, c.candidate);
        let json = serde_json::to_string(&a).expect("json");
        assert_eq!(
            serde_json::from_str::<SplitRecord>(&json).expect("parse"),
            a
        );
    }

    #[test]
    fn index_sets_merge_into_ranges_and_check_themselves() {
        let s = IndexSet::from_indices(vec![5, 1, 2, 3, 9, 3]);
        assert_eq!(s.ranges, vec![[1, 4], [5, 6], [9, 10]]);
        assert_eq!(s.len(), 5);
        assert!(s.contains(3) && !s.contains(4) && s.contains(9) && !s.contains(0));
        assert!(s.validate(10).is_ok() && s.validate(9).is_err());
        assert!(IndexSet {
            ranges: vec![[3, 5], [4, 6]]
        }
        .validate(10)
        .is_err());
        assert!(SplitRecord::make(
            "d",
            10,
            SplitSpec {
                seed: 0,
                candidate: 0.6,
                independent: 0.5
            },
            "t",
            0
        )
        .is_err());
        let mut bad = SplitRecord::make("d", 50, SplitSpec::default(), "t", 0).expect("split");
        bad.shared = IndexSet::range(0, 50);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn set_names_are_the_same_in_json_and_on_the_command_line() {
        for s in SplitSet::ALL.into_iter().chain([SplitSet::Inputs]) {
            let json = serde_json::to_value(s).expect("json");
            assert_eq!(json, s.name());
            assert_eq!(serde_json::from_value::<SplitSet>(json).expect("parse"), s);
            assert_eq!(s.to_string(), s.name());
        }
        use crate::choice::Choice;
        let offered: Vec<&str> = SplitSet::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            SplitSet::NAMES,
            offered,
            "every set but inputs is a --sets value"
        );
        assert!(SplitSet::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(SplitSet::ALL.iter().all(|&s| s < SplitSet::Inputs));
    }
}
