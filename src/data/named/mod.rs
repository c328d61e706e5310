//! The datasets known by name, in one registry that both the trainer (`--dataset NAME`) and
//! the scorer's inputs (`NAME:PART[range]`) read: [`NAMED`]. A named dataset is one file here
//! implementing [`NamedDataset`] plus one entry in the `registry!` below (`module::Type`,
//! which also declares the module); paths (IDX files, folders) are handled by
//! [`super::dataset`] and [`super::inputs`] for every dataset alike.

/// Declares each dataset's module (its file) and lists it in [`NAMED`].
macro_rules! registry {
    ($($module:ident :: $ty:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every named dataset.
        pub static NAMED: &[&dyn NamedDataset] = &[$(&$module::$ty),*];
    };
}

registry!(fashion_mnist::FashionMnist, mnist::Mnist);

use super::ImageArray;
use crate::error::Result;

/// A dataset with a name, whose files `scripts/setup.sh --datasets` installs.
pub trait NamedDataset: Sync {
    /// The name `sslmem-train --dataset` takes, e.g. `fashion-mnist`.
    fn name(&self) -> &'static str;

    /// The input names `sslmem score` / `audit` take, each with the key passed to
    /// [`Self::load_input`] (several names may share a key: `mnist` and `mnist:digits`).
    fn inputs(&self) -> &'static [(&'static str, &'static str)];

    /// Loads the images behind one input key of [`Self::inputs`].
    ///
    /// # Errors
    /// [`crate::Error::Dataset`] when its files are missing (saying how to install them) or
    /// unreadable.
    fn load_input(&self, key: &str) -> Result<ImageArray>;

    /// The training and test arrays. `None`: the dataset has no test set of its own, and a
    /// seeded fifth of [`Self::load_all`] is held out (`super::dataset`'s rule for every such
    /// dataset).
    fn train_test(&self) -> Option<Result<(ImageArray, ImageArray)>>;

    /// Every image, for datasets without their own test set.
    fn load_all(&self) -> Result<ImageArray>;

    /// Class names by label, where the dataset documents them; empty otherwise.
    fn classes(&self) -> &'static [&'static str] {
        &[]
    }

    /// The per-channel mean and standard deviation (of [0, 1] pixels) usually used to
    /// normalise it.
    fn normalisation(&self) -> (Vec<f32>, Vec<f32>);
}

/// The dataset `sslmem-train --dataset` calls `name`.
pub fn by_name(name: &str) -> Option<&'static dyn NamedDataset> {
    NAMED.iter().copied().find(|d| d.name() == name)
}

/// The dataset and load key behind an input name (`fashion-mnist:test`, `mnist:digits`).
pub fn by_input(name: &str) -> Option<(&'static dyn NamedDataset, &'static str)> {
    NAMED.iter().copied().find_map(|d| {
        d.inputs()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, key)| (d, *key))
    })
}

/// The names `--dataset` takes, for messages: `fashion-mnist, mnist`.
pub fn names() -> String {
    NAMED
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The input names, for messages: `fashion-mnist:train, fashion-mnist:test, mnist`.
pub fn input_names() -> String {
    // One name per load key (the first), as users are shown them.
    let (mut keys, mut out) = (Vec::new(), Vec::new());
    for d in NAMED {
        for (n, key) in d.inputs() {
            if !keys.contains(key) {
                keys.push(*key);
                out.push(*n);
            }
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_inputs_are_unique_and_found() {
        let mut seen = std::collections::BTreeSet::new();
        for d in NAMED {
            assert!(seen.insert(d.name()), "{} twice", d.name());
            assert!(by_name(d.name()).is_some());
            for (n, key) in d.inputs() {
                assert!(seen.insert(n) || *n == d.name(), "input {n} twice");
                assert_eq!(by_input(n).map(|(_, k)| k), Some(*key));
            }
        }
        assert_eq!(names(), "fashion-mnist, mnist");
        assert_eq!(
            input_names(),
            "fashion-mnist:train, fashion-mnist:test, mnist"
        );
        assert!(by_input("fashion-mnist").is_none());
        assert!(by_name("cifar-10").is_none());
    }
}
