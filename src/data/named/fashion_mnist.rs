//! Fashion-MNIST (Xiao et al. 2017) from Debian's `dataset-fashion-mnist`: 60,000 training and
//! 10,000 test images, 28x28 grey, ten classes; files in [`crate::data::fashion_mnist_dir`].

use super::NamedDataset;
use crate::data::{fashion_mnist_dir, idx, ImageArray};
use crate::error::{Error, Result};

pub struct FashionMnist;

/// Fashion-MNIST's class names, by label (the dataset's own documentation).
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

impl NamedDataset for FashionMnist {
    fn name(&self) -> &'static str {
        "fashion-mnist"
    }

    fn inputs(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("fashion-mnist:train", "fashion-mnist:train"),
            ("fashion-mnist:test", "fashion-mnist:test"),
        ]
    }

    fn load_input(&self, key: &str) -> Result<ImageArray> {
        let prefix = if key.ends_with("train") {
            "train"
        } else {
            "t10k"
        };
        let dir = fashion_mnist_dir();
        let images = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        if !images.is_file() {
            return Err(Error::Dataset {
                name: key.into(),
                reason: format!(
                    "{} is missing; run `scripts/setup.sh --datasets`",
                    images.display()
                ),
            });
        }
        let labels = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        idx::load(key, &images, labels.is_file().then_some(labels.as_path()))
    }

    fn train_test(&self) -> Option<Result<(ImageArray, ImageArray)>> {
        let train = self.load_input("fashion-mnist:train");
        Some(train.and_then(|train| Ok((train, self.load_input("fashion-mnist:test")?))))
    }

    fn load_all(&self) -> Result<ImageArray> {
        self.load_input("fashion-mnist:train")
    }

    fn classes(&self) -> &'static [&'static str] {
        &CLASSES
    }

    /// The training set's pixel mean and standard deviation.
    fn normalisation(&self) -> (Vec<f32>, Vec<f32>) {
        (vec![0.2860], vec![0.3530])
    }
}
