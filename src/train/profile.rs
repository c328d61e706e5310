//! Where a training run's wall time goes: seconds per phase of the epoch loop, summed over
//! the epochs, so that per-epoch costs (pipeline fill, monitor, checkpoints) can be told
//! apart from the training steps. The trainer logs each epoch's at debug level and returns
//! the run's total; `sslmem-train bench-epoch` prints it.

use std::fmt;
use std::time::Instant;

/// Seconds spent in each phase. The main thread's phases add up to `wall`; `augment` is the
/// producer thread's, which runs at the same time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Profile {
    /// Epochs and images trained.
    pub epochs: usize,
    pub images: usize,
    /// Wall time of the epoch loop (model set-up before it not included).
    pub wall: f64,
    /// Epoch start to its first batch: augmentation the producer has not done ahead (the
    /// pipeline fill).
    pub first_batch: f64,
    /// Waiting on the producer for the epoch's later batches.
    pub waiting: f64,
    /// Tensor copy, forward, backward, optimiser step and reading the loss back.
    pub step: f64,
    /// Progress bar.
    pub bookkeeping: f64,
    /// The memorization monitor.
    pub monitor: f64,
    /// Log lines and checkpoints.
    pub save: f64,
    /// Producer: making the epoch's views (on the rayon pool).
    pub augment: f64,
}

impl Profile {
    pub fn add(&mut self, o: &Profile) {
        self.epochs += o.epochs;
        self.images += o.images;
        self.wall += o.wall;
        self.first_batch += o.first_batch;
        self.waiting += o.waiting;
        self.step += o.step;
        self.bookkeeping += o.bookkeeping;
        self.monitor += o.monitor;
        self.save += o.save;
        self.augment += o.augment;
    }

    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.wall
    }
}

impl fmt::Display for Profile {
    /// Seconds per epoch of each phase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.epochs.max(1) as f64;
        write!(
            f,
            "{} epochs, {} images in {:.2} s ({:.1} images/s); per epoch: {:.3} s = first batch {:.3} + waiting {:.3} + steps {:.3} + bookkeeping {:.3} + monitor {:.3} + log/checkpoint {:.3}; producer: augment {:.3}",
            self.epochs,
            self.images,
            self.wall,
            self.images_per_second(),
            self.wall / e,
            self.first_batch / e,
            self.waiting / e,
            self.step / e,
            self.bookkeeping / e,
            self.monitor / e,
            self.save / e,
            self.augment / e,
        )
    }
}

/// Adds the seconds since the last call to one phase.
pub(crate) struct Lap(Instant);

impl Lap {
    pub(crate) fn start() -> Self {
        Self(Instant::now())
    }

    /// Seconds since the last lap (or the start), and starts the next.
    pub(crate) fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let s = now.duration_since(self.0).as_secs_f64();
        self.0 = now;
        s
    }
}
