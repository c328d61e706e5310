//! The training batches of a run, made on the CPU pool by one producer thread: each epoch's
//! seeded shuffle of the examples, cut into batches (the remainder dropped), and the views
//! the method asks for of each example. Views depend on seeds only, never on timing, so a
//! resumed run sees the batches an uninterrupted one would.

use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;

use crate::augment::{Augmenter, Normalize};
use crate::data::ImageArray;
use crate::rng::{splitmix64, Rng};

/// One step's input: view 0 of every example of the batch, then view 1 of every example,
/// and so on (`batch × view_len(v)` values per view `v`), and the seconds it took to make them.
pub struct Batch {
    pub views: Vec<f32>,
    pub augment: f64,
}

/// The batches of a run (see the module docs).
pub struct Batches<'a> {
    pub data: &'a ImageArray,
    /// (example, copy) pairs, see [`with_copies`].
    pub examples: Vec<(usize, usize)>,
    pub norm: &'a Normalize,
    pub seed: u64,
    pub batch: usize,
    pub epochs: usize,
    /// The augmenter of each view of an example, in the method's order
    /// ([`super::methods::SslMethod::views`]): the run's for global views, a smaller one for
    /// local crops.
    pub views: Vec<&'a Augmenter>,
}

impl Batches<'_> {
    /// The examples of `epoch` in training order.
    pub fn order(&self, epoch: usize) -> Vec<(usize, usize)> {
        let mut order = self.examples.clone();
        let mut rng = Rng::from_seed(splitmix64(self.seed ^ splitmix64(epoch as u64 + 1)));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order
    }

    /// The views of each of `chunk` at `epoch`: with `V` views per example, copy k of an
    /// example gets views `V (epoch + k epochs)` to the `V - 1` after it, so every copy and
    /// epoch sees views of its own (with two views: 2(epoch + k epochs) and the next).
    pub fn make(&self, epoch: usize, chunk: &[(usize, usize)]) -> Vec<f32> {
        let (batch, views) = (chunk.len(), self.views.len());
        let lens: Vec<usize> = self.views.iter().map(|a| self.view_len(a)).collect();
        let mut buf = vec![0f32; batch * lens.iter().sum::<usize>()];
        let mut rest = buf.as_mut_slice();
        for (v, (augmenter, &len)) in self.views.iter().zip(&lens).enumerate() {
            let (block, tail) = rest.split_at_mut(batch * len);
            rest = tail;
            block.par_chunks_mut(len).enumerate().for_each(|(k, dst)| {
                let (i, copy) = chunk[k];
                if let Ok(img) = self.data.get(i) {
                    let base = (views * (epoch + copy * self.epochs)) as u64;
                    let view =
                        augmenter.view(&img.to_planes(), self.seed, i as u64, base + v as u64);
                    self.norm.write(&view, dst);
                }
            });
        }
        buf
    }

    /// Values of one normalised view from `augmenter` (channels × height × width).
    pub fn view_len(&self, augmenter: &Augmenter) -> usize {
        self.data.channels * augmenter.height * augmenter.width
    }

    /// Sends every batch of `epochs`, in order, until done or until nobody receives.
    pub fn produce(&self, epochs: std::ops::Range<usize>, tx: &mpsc::SyncSender<Batch>) {
        for epoch in epochs {
            for chunk in self.order(epoch).chunks_exact(self.batch) {
                let started = Instant::now();
                let views = self.make(epoch, chunk);
                let augment = started.elapsed().as_secs_f64();
                if tx.send(Batch { views, augment }).is_err() {
                    return;
                }
            }
        }
    }
}

/// Pairs each index with its repeat number: the first occurrence of an example is copy 0,
/// the next copy 1, and so on (canaries planted with `--canary-repeats`).
pub fn with_copies(indices: &[usize]) -> Vec<(usize, usize)> {
    let mut seen = std::collections::HashMap::new();
    indices
        .iter()
        .map(|&i| {
            let k = seen.entry(i).or_insert(0usize);
            *k += 1;
            (i, *k - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::augment::AugmentSpec;

    /// `n` deterministic 8x8 grey images (pixel `v` of the array is `v * mult % 251`).
    fn images(n: usize, mult: usize) -> ImageArray {
        ImageArray {
            name: "test".into(),
            channels: 1,
            height: 8,
            width: 8,
            pixels: (0..n * 64).map(|v| (v * mult % 251) as u8).collect(),
            labels: None,
        }
    }

    #[test]
    fn the_run_long_producer_sends_each_epochs_batches_in_order() {
        let data = images(10, 7);
        let augmenter = Augmenter::new(AugmentSpec::simclr(), 8, 8).expect("augmenter");
        let norm = Normalize::new(vec![0.5], vec![0.25], 1).expect("norm");
        let batches = Batches {
            data: &data,
            examples: with_copies(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3]),
            norm: &norm,
            seed: 7,
            batch: 4,
            epochs: 5,
            views: vec![&augmenter; 2],
        };
        // A run resumed after epoch 2 gets the same batches as one that started at 0.
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::scope(|s| {
            let batches = &batches;
            s.spawn(move || batches.produce(2..5, &tx));
            let got: Vec<Vec<f32>> = rx.iter().map(|b| b.views).collect();
            let want: Vec<Vec<f32>> = (2..5)
                .flat_map(|e| {
                    batches
                        .order(e)
                        .chunks_exact(4)
                        .map(|c| batches.make(e, c))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got.len(), 3 * 2, "two whole batches of 4 in 11 examples");
            assert_eq!(got, want);
        });
        // Every epoch has an order of its own, and each is a permutation.
        let (o2, o3) = (batches.order(2), batches.order(3));
        assert_ne!(o2, o3);
        let mut sorted = o3.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, with_copies(&[0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]));
    }

    #[test]
    fn views_are_numbered_per_epoch_and_copy() {
        let data = images(2, 13);
        let augmenter = Augmenter::new(AugmentSpec::simclr(), 8, 8).expect("augmenter");
        let norm = Normalize::new(vec![0.5], vec![0.25], 1).expect("norm");
        let three = Batches {
            data: &data,
            examples: with_copies(&[0, 1, 1]),
            norm: &norm,
            seed: 3,
            batch: 3,
            epochs: 4,
            views: vec![&augmenter; 3],
        };
        let chunk = [(0, 0), (1, 1)];
        let buf = three.make(2, &chunk);
        assert_eq!(buf.len(), 3 * 2 * 64);
        // View v of example 1, copy 1, at epoch 2: number 3 (2 + 1 * 4) + v.
        let img = data.get(1).expect("image").to_planes();
        for v in 0..3 {
            let mut want = vec![0f32; 64];
            norm.write(&augmenter.view(&img, 3, 1, 3 * 6 + v as u64), &mut want);
            assert_eq!(
                &buf[(v * 2 + 1) * 64..(v * 2 + 2) * 64],
                &want[..],
                "view {v}"
            );
        }
    }

    #[test]
    fn local_views_follow_the_global_ones_at_their_own_size() {
        let data = images(2, 11);
        let global = Augmenter::new(AugmentSpec::simclr(), 8, 8).expect("augmenter");
        let local = Augmenter::new(AugmentSpec::simclr(), 4, 4).expect("augmenter");
        let norm = Normalize::new(vec![0.5], vec![0.25], 1).expect("norm");
        let b = Batches {
            data: &data,
            examples: with_copies(&[0, 1]),
            norm: &norm,
            seed: 5,
            batch: 2,
            epochs: 3,
            views: vec![&global, &global, &local],
        };
        let buf = b.make(1, &[(0, 0), (1, 0)]);
        assert_eq!(buf.len(), 2 * (64 + 64 + 16));
        // View 2 (number 3 * 1 + 2) of example 1: the last 16 values.
        let img = data.get(1).expect("image").to_planes();
        let mut want = vec![0f32; 16];
        norm.write(&local.view(&img, 5, 1, 5), &mut want);
        assert_eq!(&buf[2 * 128 + 16..], &want[..]);
        // View 1 of example 0 is a global view, unchanged by the local one after it.
        let img0 = data.get(0).expect("image").to_planes();
        let mut want = vec![0f32; 64];
        norm.write(&global.view(&img0, 5, 0, 4), &mut want);
        assert_eq!(&buf[128..192], &want[..]);
    }

    #[test]
    fn repeats_are_numbered_in_order() {
        assert_eq!(
            with_copies(&[3, 1, 3, 3, 2, 1]),
            [(3, 0), (1, 0), (3, 1), (3, 2), (2, 0), (1, 1)]
        );
    }
}
